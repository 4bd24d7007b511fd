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
}

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
                ],
                "docs",
            );
            BackendKind::Docs
        }
    };
    Some(BackendConfig { name, kind, share })
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
            text.contains(r#"must be "none" or "all", got "everyone""#),
            "{text}"
        );
        assert!(text.contains("edge.toml"), "{text}");
    }

    #[test]
    fn unknown_backend_fields_are_errors() {
        let err = load_file("[[backends]]\nname = \"a\"\ncomand = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("comand"), "{err}");
    }
}
