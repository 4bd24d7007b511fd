//! `[[backends]]`, `[proxy]` and `[legacy_sse]`: which MCP servers sit behind the edge.
//!
//! No `[[backends]]` at all means the built-in docs tools, exactly as before. One
//! backend is served under its own tool/prompt/resource names; several are namespaced
//! (`<name>__<tool>`, `<name>__<prompt>`, `<name>+<uri>`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Choice, Errors, duration, path_of, positive};

/// Environment variables a stdio child inherits from the edge when `env_allowlist`
/// is not given. Everything else (notably the edge's own `MCP_*` settings) is withheld.
pub const DEFAULT_ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "NODE_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: Option<String>,
    pub kind: Option<Choice<RawBackendKind>>,
    pub command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub env_allowlist: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub url: Option<String>,
    pub credential_file: Option<String>,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<String>,
    pub share: Option<Choice<Share>>,
    pub credentials: Option<RawCredentials>,
}

/// `[backends.credentials]`: what each principal's own children get (see
/// [`CredentialsConfig`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    pub dir: Option<String>,
    pub names: Option<Vec<String>>,
    pub required: Option<Vec<String>>,
    pub from_header: Option<BTreeMap<String, String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub contact: Option<String>,
}

/// `backends[].share`: which callers one child (or upstream connection) may serve.
/// The edge never lets two principals reach the same child unless told to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Share {
    /// Nobody shares: each session has its own child, and each principal's stateless
    /// calls have that principal's own child.
    #[default]
    None,
    /// Everybody's stateless calls share one pool of `proxy.pool_size` children (for
    /// servers that keep no state between calls; one person's calls can see what
    /// another's left behind in a stateful one).
    All,
    /// One child per principal serves all of that principal's sessions and stateless
    /// calls (for heavyweight servers; a person's sessions share its state).
    Principal,
}

/// `backends[].kind`, as written (with its settings, [`BackendKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawBackendKind {
    Stdio,
    Http,
    Docs,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub call_timeout: Option<String>,
    pub spawn_timeout: Option<String>,
    pub max_children: Option<u64>,
    pub pool_size: Option<u64>,
    pub pool_idle_timeout: Option<String>,
    pub kill_grace: Option<String>,
    pub restart_backoff_max: Option<String>,
    pub input_timeout: Option<String>,
    pub max_pending_inputs: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLegacySse {
    pub enabled: Option<bool>,
}

pub(super) fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {value:?}")),
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Only the names of `env` entries are printed by `check-config`: values may be secrets.
fn ser_env_names<S: serde::Serializer>(
    env: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(env.keys())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BackendKind {
    /// The built-in docs tools over `docs.dir`.
    Docs,
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        command: Vec<String>,
        #[serde(serialize_with = "ser_env_names")]
        env: BTreeMap<String, String>,
        env_allowlist: Vec<String>,
        cwd: Option<PathBuf>,
    },
    /// An upstream Streamable HTTP MCP server.
    Http {
        url: String,
        /// A bearer token for the upstream (the client's own token is never forwarded).
        credential_file: Option<PathBuf>,
        /// Extra CA (PEM) trusted for the upstream's certificate.
        ca_file: Option<PathBuf>,
        #[serde(serialize_with = "ser_duration")]
        connect_timeout: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: BackendKind,
    pub share: Share,
    /// Per-principal credentials for this backend's children (none: everybody's
    /// children run with the same settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsConfig>,
}

/// `backends[].credentials`: credentials that differ per principal. Each NAME is a
/// file `<dir>/<principal>/<NAME>` (when in `names`) and/or a request header the
/// client sends (`from_header`); a stdio child gets it as environment variable NAME,
/// an HTTP upstream as the header `headers` maps to it. Values are never held here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialsConfig {
    /// `<dir>/<principal>/<NAME>`: one directory per principal.
    pub dir: Option<PathBuf>,
    /// Credentials read from the principal's directory.
    pub names: Vec<String>,
    /// Client request header (lower case) → NAME. The header is taken off the request
    /// before anything else sees it.
    pub from_header: BTreeMap<String, String>,
    /// HTTP upstreams: upstream request header (lower case) → NAME.
    pub headers: BTreeMap<String, String>,
    /// NAMEs a child must not start without (default: all of them).
    pub required: Vec<String>,
    /// Whom a principal without a required credential should ask (in the error).
    pub contact: String,
}

/// The default `credentials.contact`.
pub const DEFAULT_CREDENTIALS_CONTACT: &str = "the administrator of this mcp-edge";

/// Client headers a credential can never be taken from: the edge's own access
/// credential (the MCP spec forbids passing it through) and headers the protocol, the
/// edge or the HTTP stack already give a meaning to.
const FORBIDDEN_CLIENT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "origin",
    "content-type",
    "content-length",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "x-request-id",
    "x-forwarded-for",
    "forwarded",
    "traceparent",
    "tracestate",
];

/// Upstream headers the HTTP client sets itself (a credential there would clash).
const RESERVED_UPSTREAM_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "traceparent",
    "tracestate",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyConfig {
    /// Longest a forwarded request may take before the client gets an error.
    #[serde(serialize_with = "ser_duration")]
    pub call_timeout: Duration,
    /// Spawn + MCP handshake deadline for a backend connection.
    #[serde(serialize_with = "ser_duration")]
    pub spawn_timeout: Duration,
    /// Live child processes at most (all backends, sessions and pools together).
    pub max_children: usize,
    /// Connections in the one pool of a `share = "all"` backend (stateless requests).
    pub pool_size: usize,
    /// A pooled or per-principal connection unused for this long is closed.
    #[serde(serialize_with = "ser_duration")]
    pub pool_idle_timeout: Duration,
    /// SIGTERM → SIGKILL delay when a child is stopped.
    #[serde(serialize_with = "ser_duration")]
    pub kill_grace: Duration,
    /// Upper bound of the restart backoff after a backend crashed.
    #[serde(serialize_with = "ser_duration")]
    pub restart_backoff_max: Duration,
    /// How long a backend's question to a stateless (2026-07-28) client waits for the
    /// client's retry with the answer; then the backend gets an error for it.
    #[serde(serialize_with = "ser_duration")]
    pub input_timeout: Duration,
    /// Backend questions awaiting a stateless client's answer, at most (all backends).
    pub max_pending_inputs: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            call_timeout: Duration::from_secs(300),
            spawn_timeout: Duration::from_secs(30),
            max_children: 200,
            pool_size: 4,
            pool_idle_timeout: Duration::from_secs(300),
            kill_grace: Duration::from_secs(5),
            restart_backoff_max: Duration::from_secs(30),
            input_timeout: Duration::from_secs(300),
            max_pending_inputs: 1000,
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.contains("--")
}

pub(super) fn validate(
    e: &mut Errors<'_>,
    raw: &super::RawConfig,
) -> (Vec<BackendConfig>, ProxyConfig, bool) {
    let proxy = proxy(e, raw);
    let mut backends: Vec<BackendConfig> = Vec::new();
    for (i, b) in raw.backends.iter().enumerate() {
        if let Some(backend) = backend(e, i, b, &backends) {
            backends.push(backend);
        }
    }
    let legacy_sse = raw.legacy_sse.enabled.unwrap_or(false);
    (backends, proxy, legacy_sse)
}

fn proxy(e: &mut Errors<'_>, raw: &super::RawConfig) -> ProxyConfig {
    let d = ProxyConfig::default();
    let p = &raw.proxy;
    ProxyConfig {
        call_timeout: duration(
            e,
            "proxy.call_timeout",
            p.call_timeout.as_deref(),
            d.call_timeout,
        ),
        spawn_timeout: duration(
            e,
            "proxy.spawn_timeout",
            p.spawn_timeout.as_deref(),
            d.spawn_timeout,
        ),
        max_children: positive(e, "proxy.max_children", p.max_children, 200),
        pool_size: positive(e, "proxy.pool_size", p.pool_size, 4),
        pool_idle_timeout: duration(
            e,
            "proxy.pool_idle_timeout",
            p.pool_idle_timeout.as_deref(),
            d.pool_idle_timeout,
        ),
        kill_grace: duration(e, "proxy.kill_grace", p.kill_grace.as_deref(), d.kill_grace),
        restart_backoff_max: duration(
            e,
            "proxy.restart_backoff_max",
            p.restart_backoff_max.as_deref(),
            d.restart_backoff_max,
        ),
        input_timeout: {
            let t = duration(
                e,
                "proxy.input_timeout",
                p.input_timeout.as_deref(),
                d.input_timeout,
            );
            if t.is_zero() {
                e.push("proxy.input_timeout", "must be longer than zero");
            }
            t
        },
        max_pending_inputs: positive(
            e,
            "proxy.max_pending_inputs",
            p.max_pending_inputs,
            d.max_pending_inputs as u64,
        ),
    }
}

/// `backends[i]`, or `None` when its name or kind is unusable (the rest of it would
/// only produce follow-on errors).
fn backend(
    e: &mut Errors<'_>,
    i: usize,
    b: &RawBackend,
    earlier: &[BackendConfig],
) -> Option<BackendConfig> {
    let key = |field: &str| format!("backends[{i}].{field}");
    let name = match b.name.as_deref().map(str::trim) {
        Some(n) if valid_name(n) => n.to_owned(),
        Some(n) => {
            e.push(
                &key("name"),
                format!(
                    "{n:?} must be 1-32 characters of a-z, 0-9 and single '-', starting with a letter (it prefixes tool names)"
                ),
            );
            return None;
        }
        None => {
            e.push(&key("name"), "is required (e.g. name = \"github\")");
            return None;
        }
    };
    if earlier.iter().any(|o| o.name == name) {
        e.push(&key("name"), format!("{name:?} is used by two backends"));
    }
    let kind = match &b.kind {
        None if b.url.is_some() => RawBackendKind::Http,
        None => RawBackendKind::Stdio,
        Some(Choice::Known(kind)) => *kind,
        Some(Choice::Unknown(unknown)) => {
            e.push(&key("kind"), unknown.to_string());
            return None;
        }
    };
    let share = match &b.share {
        None => Share::default(),
        Some(Choice::Known(share)) => *share,
        Some(Choice::Unknown(unknown)) => {
            e.push(&key("share"), unknown.to_string());
            Share::default()
        }
    };
    let kind = match kind {
        RawBackendKind::Stdio => stdio_backend(e, &key, b),
        RawBackendKind::Http => http_backend(e, &key, b),
        RawBackendKind::Docs => {
            misplaced(
                e,
                &key,
                &[
                    ("command", b.command.is_some()),
                    ("url", b.url.is_some()),
                    ("credential_file", b.credential_file.is_some()),
                    ("share", b.share.is_some()),
                    ("credentials", b.credentials.is_some()),
                ],
                "docs",
            );
            BackendKind::Docs
        }
    };
    let credentials = b
        .credentials
        .as_ref()
        .filter(|_| kind != BackendKind::Docs)
        .and_then(|c| credentials(e, &key, c, &kind, share));
    Some(BackendConfig {
        name,
        kind,
        share,
        credentials,
    })
}

/// A credential NAME: an environment variable name, so also a safe file name.
fn valid_credential_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `backends[i].credentials`, or `None` when it was unusable (errors pushed).
fn credentials(
    e: &mut Errors<'_>,
    key: &dyn Fn(&str) -> String,
    c: &RawCredentials,
    kind: &BackendKind,
    share: Share,
) -> Option<CredentialsConfig> {
    let at = |field: &str| key(&format!("credentials.{field}"));
    let before = e.list.len();
    if share == Share::All {
        e.push(
            &key("credentials"),
            "cannot be used with share = \"all\": one pool serves everybody, so no child belongs to one principal (use share = \"none\")",
        );
    }
    let names = c.names.clone().unwrap_or_default();
    for n in &names {
        if !valid_credential_name(n) {
            e.push(
                &at("names"),
                format!("{n:?} must be a variable name (letters, digits and _, not starting with a digit): it names both the file and the environment variable"),
            );
        }
    }
    let dir = path_of(&c.dir);
    match (&dir, names.is_empty()) {
        (None, false) => e.push(
            &at("dir"),
            "is required with credentials.names: the directory holding <dir>/<principal>/<NAME>",
        ),
        (Some(_), true) => e.push(
            &at("names"),
            "is required with credentials.dir: the files each principal's directory holds, e.g. [\"GITHUB_TOKEN\"]",
        ),
        _ => {}
    }
    let mut from_header = BTreeMap::new();
    for (header, name) in c.from_header.clone().unwrap_or_default() {
        let lower = header.trim().to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            e.push(
                &at("from_header"),
                format!("{header:?} is not a header name"),
            );
        } else if FORBIDDEN_CLIENT_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-mcp-edge-")
        {
            e.push(
                &at("from_header"),
                format!("{header:?} cannot carry a credential: it is the edge's own access credential or a header the protocol or the edge uses (never pass the client's access token on)"),
            );
        } else if !valid_credential_name(&name) {
            e.push(
                &at("from_header"),
                format!("{header:?} = {name:?}: {name:?} must be a variable name (letters, digits and _)"),
            );
        } else if from_header.insert(lower, name).is_some() {
            e.push(&at("from_header"), format!("{header:?} is given twice"));
        }
    }
    let all: Vec<String> = {
        let mut all = names.clone();
        for n in from_header.values() {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        all
    };
    if all.is_empty() {
        e.push(
            &key("credentials"),
            "names no credential: give dir and names (files) or from_header",
        );
    }
    let required = match &c.required {
        None => all.clone(),
        Some(required) => {
            for n in required {
                if !all.contains(n) {
                    e.push(
                        &at("required"),
                        format!("{n:?} is not a credential of this backend (credentials.names or credentials.from_header)"),
                    );
                }
            }
            required.clone()
        }
    };
    let mut headers = BTreeMap::new();
    match kind {
        BackendKind::Stdio { env, .. } => {
            if c.headers.is_some() {
                e.push(
                    &at("headers"),
                    "does not apply to kind = \"stdio\" (a stdio child gets each credential as the environment variable NAME)",
                );
            }
            for n in &all {
                if env.contains_key(n) {
                    e.push(
                        &key("env"),
                        format!("{n:?} is also a per-principal credential: set it in one place"),
                    );
                }
            }
        }
        BackendKind::Http {
            credential_file, ..
        } => {
            for (header, name) in c.headers.clone().unwrap_or_default() {
                let lower = header.trim().to_ascii_lowercase();
                if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                    e.push(&at("headers"), format!("{header:?} is not a header name"));
                } else if RESERVED_UPSTREAM_HEADERS.contains(&lower.as_str()) {
                    e.push(
                        &at("headers"),
                        format!("{header:?} is set by the edge's HTTP client itself"),
                    );
                } else if lower == "authorization" && credential_file.is_some() {
                    e.push(
                        &at("headers"),
                        "\"authorization\" is already set from credential_file: use one of the two",
                    );
                } else if !all.contains(&name) {
                    e.push(
                        &at("headers"),
                        format!("{header:?} = {name:?}: {name:?} is not a credential of this backend (credentials.names or credentials.from_header)"),
                    );
                } else if headers.insert(lower, name).is_some() {
                    e.push(&at("headers"), format!("{header:?} is given twice"));
                }
            }
            for n in &all {
                if !headers.values().any(|v| v == n) {
                    e.push(
                        &at("headers"),
                        format!("{n:?} is sent upstream in no header: map a header to it, e.g. headers = {{ \"x-api-token\" = {n:?} }}"),
                    );
                }
            }
        }
        BackendKind::Docs => {}
    }
    let contact = match c.contact.as_deref().map(str::trim) {
        Some("") => {
            e.push(
                &at("contact"),
                "must not be empty (whom to ask, e.g. \"#platform in Slack\")",
            );
            String::new()
        }
        Some(text) => text.to_owned(),
        None => DEFAULT_CREDENTIALS_CONTACT.to_owned(),
    };
    (e.list.len() == before).then_some(CredentialsConfig {
        dir,
        names,
        from_header,
        headers,
        required,
        contact,
    })
}

/// Fields of another kind are errors, not silently ignored.
fn misplaced(
    e: &mut Errors<'_>,
    key: &dyn Fn(&str) -> String,
    fields: &[(&str, bool)],
    kind: &str,
) {
    for (field, present) in fields {
        if *present {
            e.push(&key(field), format!("does not apply to kind = \"{kind}\""));
        }
    }
}

fn stdio_backend(e: &mut Errors<'_>, key: &dyn Fn(&str) -> String, b: &RawBackend) -> BackendKind {
    misplaced(
        e,
        key,
        &[
            ("url", b.url.is_some()),
            ("credential_file", b.credential_file.is_some()),
            ("ca_file", b.ca_file.is_some()),
            ("connect_timeout", b.connect_timeout.is_some()),
        ],
        "stdio",
    );
    let command = b.command.clone().unwrap_or_default();
    if command.is_empty() || command[0].trim().is_empty() {
        e.push(
            &key("command"),
            "is required for a stdio backend: the program and its arguments, e.g. [\"python\", \"-m\", \"my_server\"]",
        );
    }
    let env = b.env.clone().unwrap_or_default();
    for k in env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            e.push(&key("env"), format!("{k:?} is not a variable name"));
        }
    }
    BackendKind::Stdio {
        command,
        env,
        env_allowlist: b.env_allowlist.clone().unwrap_or_else(|| {
            DEFAULT_ENV_ALLOWLIST
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        cwd: path_of(&b.cwd),
    }
}

fn http_backend(e: &mut Errors<'_>, key: &dyn Fn(&str) -> String, b: &RawBackend) -> BackendKind {
    misplaced(
        e,
        key,
        &[
            ("command", b.command.is_some()),
            ("env", b.env.is_some()),
            ("env_allowlist", b.env_allowlist.is_some()),
            ("cwd", b.cwd.is_some()),
        ],
        "http",
    );
    let url = b.url.clone().unwrap_or_default();
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some() => {}
        _ => e.push(
            &key("url"),
            format!("{url:?} must be an https:// (or http://) URL of an MCP endpoint"),
        ),
    }
    BackendKind::Http {
        url,
        credential_file: path_of(&b.credential_file),
        ca_file: path_of(&b.ca_file),
        connect_timeout: duration(
            e,
            &key("connect_timeout"),
            b.connect_timeout.as_deref(),
            Duration::from_secs(10),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{FlagOverrides, Sources, load};

    fn load_file(text: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        let base =
            "[tls]\nmode = \"off\"\n[auth]\nmode = \"none\"\n[server]\nhost = \"127.0.0.1\"\n";
        std::fs::write(&path, format!("{base}{text}")).unwrap();
        let env: BTreeMap<&str, &str> = BTreeMap::new();
        load(Sources {
            file: Some(path),
            env: &env,
            flags: FlagOverrides::default(),
        })
    }

    #[test]
    fn no_backends_means_the_docs_tools() {
        let c = load_file("").unwrap();
        assert!(c.backends.is_empty());
        assert!(!c.legacy_sse);
        assert_eq!(c.proxy, ProxyConfig::default());
    }

    #[test]
    fn backends_parse_and_secrets_stay_out_of_check_config() {
        let c = load_file(
            "[[backends]]\nname = \"py\"\ncommand = [\"python3\", \"-m\", \"srv\"]\nenv = { TOKEN = \"s3cret-value\" }\n\n\
             [[backends]]\nname = \"gh\"\nurl = \"https://gh.example.com/mcp\"\ncredential_file = \"/run/secrets/gh\"\n\n\
             [[backends]]\nname = \"docs\"\nkind = \"docs\"\n\n[legacy_sse]\nenabled = true\n[proxy]\nmax_children = 7\n",
        )
        .unwrap();
        assert_eq!(c.backends.len(), 3);
        assert!(matches!(c.backends[0].kind, BackendKind::Stdio { .. }));
        assert!(matches!(c.backends[1].kind, BackendKind::Http { .. }));
        assert_eq!(c.backends[2].kind, BackendKind::Docs);
        assert!(c.backends.iter().all(|b| b.share == Share::None));
        assert!(c.legacy_sse);
        assert_eq!(c.proxy.max_children, 7);
        let printed = c.to_pretty_json();
        assert!(printed.contains("TOKEN"), "{printed}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
    }

    #[test]
    fn every_backend_problem_is_reported_with_its_key() {
        let err = load_file(
            "[[backends]]\nname = \"Bad Name\"\ncommand = [\"x\"]\n\n\
             [[backends]]\nname = \"a\"\n\n\
             [[backends]]\nname = \"a\"\nkind = \"http\"\nurl = \"ftp://x\"\ncommand = [\"y\"]\n\n\
             [[backends]]\nname = \"b\"\nkind = \"grpc\"\n\n\
             [[backends]]\nname = \"c\"\ncommand = [\"z\"]\nshare = \"everyone\"\n\n\
             [[backends]]\nname = \"d\"\nkind = \"docs\"\nshare = \"all\"\n\n[proxy]\ncall_timeout = \"soon\"\npool_size = 0\n",
        )
        .unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "proxy.call_timeout",
                "proxy.pool_size",
                "backends[0].name",
                "backends[1].command",
                "backends[2].name",
                "backends[2].command",
                "backends[2].url",
                "backends[3].kind",
                "backends[4].share",
                "backends[5].share",
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("backends[1].command in "), "{text}");
        assert!(
            text.contains(r#"must be "none", "all" or "principal", got "everyone""#),
            "{text}"
        );
        assert!(text.contains("edge.toml"), "{text}");
    }

    #[test]
    fn per_principal_credentials_parse_with_their_defaults() {
        let c = load_file(
            "[[backends]]\nname = \"gh\"\ncommand = [\"gh-mcp\"]\n\
             [backends.credentials]\ndir = \"/run/secrets/gh\"\nnames = [\"GITHUB_TOKEN\"]\n\
             from_header = { \"X-GitHub-Token\" = \"GITHUB_TOKEN\", \"x-jira\" = \"JIRA_TOKEN\" }\n\n\
             [[backends]]\nname = \"api\"\nurl = \"https://api.example.com/mcp\"\n\
             [backends.credentials]\ndir = \"/run/secrets/api\"\nnames = [\"TOKEN\"]\nrequired = []\n\
             headers = { \"X-Api-Token\" = \"TOKEN\" }\ncontact = \"ask #platform in Slack\"\n",
        )
        .unwrap();
        let gh = c.backends[0].credentials.as_ref().unwrap();
        assert_eq!(
            gh.dir.as_deref(),
            Some(std::path::Path::new("/run/secrets/gh"))
        );
        assert_eq!(
            gh.required,
            ["GITHUB_TOKEN", "JIRA_TOKEN"],
            "all required by default"
        );
        assert_eq!(
            gh.from_header["x-github-token"], "GITHUB_TOKEN",
            "header names lower-cased"
        );
        assert_eq!(gh.contact, DEFAULT_CREDENTIALS_CONTACT);
        let api = c.backends[1].credentials.as_ref().unwrap();
        assert!(api.required.is_empty());
        assert_eq!(api.headers["x-api-token"], "TOKEN");
        assert_eq!(api.contact, "ask #platform in Slack");
        assert!(c.to_pretty_json().contains("credentials"));
    }

    #[test]
    fn every_credentials_problem_is_reported_with_its_key() {
        let err = load_file(
            "[[backends]]\nname = \"a\"\ncommand = [\"x\"]\nshare = \"all\"\n\
             [backends.credentials]\ndir = \"/d\"\nnames = [\"T\"]\n\n\
             [[backends]]\nname = \"b\"\ncommand = [\"x\"]\nenv = { T = \"1\" }\n\
             [backends.credentials]\nnames = [\"T\", \"bad-name\"]\nheaders = { x = \"T\" }\n\
             from_header = { Authorization = \"T\", \"mcp-session-id\" = \"T\" }\nrequired = [\"U\"]\ncontact = \" \"\n\n\
             [[backends]]\nname = \"c\"\nurl = \"https://c.example.com/mcp\"\ncredential_file = \"/f\"\n\
             [backends.credentials]\nfrom_header = { x-c = \"C\", x-d = \"D\" }\nheaders = { authorization = \"C\", accept = \"D\" }\n\n\
             [[backends]]\nname = \"d\"\nkind = \"docs\"\n[backends.credentials]\ndir = \"/d\"\n\n\
             [[backends]]\nname = \"e\"\ncommand = [\"x\"]\n[backends.credentials]\ncontact = \"x\"\n",
        )
        .unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "backends[0].credentials",
                "backends[1].credentials.names",
                "backends[1].credentials.dir",
                "backends[1].credentials.from_header",
                "backends[1].credentials.from_header",
                "backends[1].credentials.required",
                "backends[1].credentials.headers",
                "backends[1].env",
                "backends[1].credentials.contact",
                "backends[2].credentials.headers",
                "backends[2].credentials.headers",
                "backends[2].credentials.headers",
                "backends[2].credentials.headers",
                "backends[3].credentials",
                "backends[4].credentials",
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("share = \"all\""), "{text}");
        assert!(
            text.contains("\"Authorization\" cannot carry a credential"),
            "{text}"
        );
        assert!(text.contains("does not apply to kind = \"docs\""), "{text}");
        assert!(text.contains("names no credential"), "{text}");
    }

    #[test]
    fn unknown_backend_fields_are_errors() {
        let err = load_file("[[backends]]\nname = \"a\"\ncomand = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("comand"), "{err}");
    }
}
