//! Configuration: TOML file, then environment variables, then CLI flags.
//!
//! The file is parsed into [`raw::RawConfig`] (unknown keys rejected), overrides are
//! applied onto it with their origin recorded, and [`validate`] turns it into a
//! [`Config`], collecting every problem so the operator sees them all at once. Each
//! error names the key and where its value came from (file + key, env var, or flag).

pub mod auth;
pub mod backends;
pub mod cluster;
pub mod connections;
pub mod deploy;
pub mod limits;
pub mod oauth;
pub mod observe;
pub mod raw;
pub mod reference;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use auth::{
    AccessConfig, AuthConfig, AuthMode, DEFAULT_JWT_PRINCIPAL_PREFIX, JwtConfig, JwtKeyConfig,
    sibling_resource,
};
pub use backends::{
    BackendConfig, BackendKind, CredentialsConfig, ProxyConfig, RawBackendKind, Share,
};
pub use cluster::ClusterConfig;
pub use connections::ConnectionsConfig;
pub use deploy::{AcmeSettings, HttpsConfig, MetricsConfig, MetricsMode, StatusPageConfig};
pub use limits::{
    Rate, RateLimitConfig, RateLimitStore, RedisConfig, RedisUnavailable, SessionsConfig,
    redacted_url,
};
pub use oauth::{OAuthClientConfig, OAuthConfig};
pub use observe::{
    AuditConfig, AuditOutput, LogConfig, LogFormat, OtelConfig, OtlpProtocol, RawAuditOutput,
};
pub use raw::{Choice, KEYS, KeySpec, RawConfig, UnknownChoice};
pub use server::{ServerConfig, TlsConfig, TlsMode, Transport};

/// The environment variable naming the config file.
pub const ENV_CONFIG_FILE: &str = "MCP_EDGE_CONFIG";

/// Where the environment comes from. Tests pass a map; the binary passes [`ProcessEnv`].
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl EnvSource for BTreeMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).map(|v| v.to_string())
    }
}

/// Where a key's value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Default => write!(f, "{} (default): {}", self.key, self.message),
            Origin::File(path) => write!(f, "{} in {}: {}", self.key, path.display(), self.message),
            Origin::Env(var) => write!(
                f,
                "{} (environment variable {var}): {}",
                self.key, self.message
            ),
            Origin::Flag(flag) => write!(f, "{} (flag {flag}): {}", self.key, self.message),
        }
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Overrides given as CLI flags: `(key, flag, value)`.
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides(pub Vec<(&'static str, &'static str, String)>);

/// Inputs to [`load`].
pub struct Sources<'a> {
    pub file: Option<PathBuf>,
    pub env: &'a dyn EnvSource,
    pub flags: FlagOverrides,
}

/// Which defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// No config file and no TLS/auth settings: generate a localhost certificate and
    /// an API key in memory so `cargo run` just works.
    Dev,
    /// A real deployment: nothing is generated; missing files are errors.
    Deployment,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// The validated configuration the server runs with. Holds paths, never secret values.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub profile: Profile,
    pub config_file: Option<PathBuf>,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub sessions: SessionsConfig,
    pub docs_dir: PathBuf,
    pub access: AccessConfig,
    /// How often secret files are re-read (hash compared) when no file event arrives.
    #[serde(serialize_with = "ser_duration")]
    pub secrets_poll_interval: Duration,
    pub log: LogConfig,
    /// MCP servers behind the edge; empty = the built-in docs tools.
    pub backends: Vec<BackendConfig>,
    pub proxy: ProxyConfig,
    /// Serve the 2024-11-05 HTTP+SSE transport at `/sse` + `/messages`.
    pub legacy_sse: bool,
    pub https: HttpsConfig,
    pub metrics: MetricsConfig,
    /// The operators' status page on the admin listener (`/status`, `/status.json`).
    pub status_page: Option<StatusPageConfig>,
    /// Set when `redis.url` is: shared limits (with `rate_limit.store = "redis"`)
    /// and global per-principal session caps.
    pub redis: Option<RedisConfig>,
    pub cluster: ClusterConfig,
    /// Set when traces are exported over OTLP.
    pub otel: Option<OtelConfig>,
    pub audit: AuditConfig,
}

/// Raw values plus the origin of each key that was set.
struct Layered {
    raw: RawConfig,
    origins: HashMap<&'static str, Origin>,
}

impl Layered {
    fn origin(&self, key: &str) -> Origin {
        let key = if key.starts_with("backends[") {
            "backends"
        } else {
            key
        };
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }
}

/// Collects errors as validation goes, so all are reported at once.
struct Errors<'a> {
    layered: &'a Layered,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(ConfigError {
            key: key.to_owned(),
            origin: self.layered.origin(key),
            message: message.into(),
        });
    }

    /// The value of a [`Choice`] key. A word outside its set is reported (key,
    /// origin and the allowed words) and then treated as unset.
    fn choice<T: Clone>(&mut self, key: &str, value: &Option<Choice<T>>) -> Option<T> {
        match value {
            None => None,
            Some(Choice::Known(known)) => Some(known.clone()),
            Some(Choice::Unknown(unknown)) => {
                self.push(key, unknown.to_string());
                None
            }
        }
    }
}

fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if raw::table_key(&path).is_none() => key_paths(t, &path, out),
            _ => out.push(path),
        }
    }
}

fn read_file(path: &Path) -> Result<(RawConfig, Vec<&'static str>), Vec<ConfigError>> {
    let file_err = |key: &str, message: String| ConfigError {
        key: key.to_owned(),
        origin: Origin::File(path.to_owned()),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![file_err("(file)", format!("cannot read config file: {e}"))])?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| vec![file_err("(file)", format!("not valid TOML: {e}"))])?;
    // Report every unknown key at once, before serde would stop at the first.
    let mut present = Vec::new();
    key_paths(&table, "", &mut present);
    let mut known = Vec::new();
    let mut errors = Vec::new();
    for key in &present {
        match KEYS.iter().find(|k| k.key == key) {
            Some(spec) => known.push(spec.key),
            None => match raw::table_key(key) {
                Some(table_key) => known.push(table_key),
                None => errors.push(file_err(key, "unknown key".into())),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Every value of the wrong type, by key: serde stops at the first, so each one
    // found is reported, left out, and the rest read again.
    let mut table = table;
    loop {
        match serde_path_to_error::deserialize::<_, RawConfig>(toml::Value::Table(table.clone())) {
            Ok(raw) if errors.is_empty() => return Ok((raw, known)),
            Ok(_) => return Err(errors),
            Err(e) => {
                let key = match e.path().iter().next() {
                    Some(_) => e.path().to_string(),
                    None => "(file)".to_owned(),
                };
                // serde's own words: "invalid type: …", "invalid value: …".
                errors.push(file_err(&key, e.inner().message().trim().to_owned()));
                if !remove_path(&mut table, e.path()) {
                    return Err(errors);
                }
            }
        }
    }
}

/// Remove the key `path` names from `table` (inside an array of tables, the whole
/// array); false when there is none to remove.
fn remove_path(table: &mut toml::Table, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let keys: Vec<&str> = path
        .iter()
        .map_while(|segment| match segment {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut table = table;
    for key in parents {
        match table.get_mut(*key) {
            Some(toml::Value::Table(inner)) => table = inner,
            _ => return false,
        }
    }
    table.remove(*last).is_some()
}

/// Read, layer and validate the configuration.
pub fn load(sources: Sources<'_>) -> Result<Config, ConfigErrors> {
    let (layered, file, mut errors) = layer(&sources)?;
    let profile = if file.is_none()
        && !raw::DEPLOYMENT_KEYS
            .iter()
            .any(|k| layered.origins.contains_key(k))
    {
        Profile::Dev
    } else {
        Profile::Deployment
    };
    match validate(&layered, profile, file) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(mut more) => {
            errors.append(&mut more);
            Err(ConfigErrors(errors))
        }
    }
}

/// The file, environment and flags layered but not validated, with the problems
/// setting individual keys (for `healthcheck`, which needs only the address and
/// scheme and must work whatever the state of the rest).
pub fn load_raw(sources: Sources<'_>) -> Result<(RawConfig, Vec<ConfigError>), ConfigErrors> {
    let (layered, _, errors) = layer(&sources)?;
    Ok((layered.raw, errors))
}

type LayerResult = Result<(Layered, Option<PathBuf>, Vec<ConfigError>), ConfigErrors>;

fn layer(sources: &Sources<'_>) -> LayerResult {
    let file = sources
        .file
        .clone()
        .or_else(|| sources.env.get(ENV_CONFIG_FILE).map(PathBuf::from));
    let mut layered = Layered {
        raw: RawConfig::default(),
        origins: HashMap::new(),
    };
    let mut errors = Vec::new();
    if let Some(path) = &file {
        match read_file(path) {
            Ok((raw, keys)) => {
                layered.raw = raw;
                for key in keys {
                    layered.origins.insert(key, Origin::File(path.clone()));
                }
            }
            Err(e) => return Err(ConfigErrors(e)),
        }
    }
    observe::apply_standard_env(sources.env, &mut layered);
    for spec in KEYS {
        if let Some(value) = sources.env.get(spec.env) {
            match layered.raw.set(spec.key, &value) {
                Ok(()) => {
                    layered.origins.insert(spec.key, Origin::Env(spec.env));
                }
                Err(message) => errors.push(ConfigError {
                    key: spec.key.into(),
                    origin: Origin::Env(spec.env),
                    message,
                }),
            }
        }
    }
    for (key, flag, value) in &sources.flags.0 {
        let Some(spec) = KEYS.iter().find(|k| k.key == *key) else {
            errors.push(ConfigError {
                key: key.to_string(),
                origin: Origin::Flag(flag),
                message: "unknown key".into(),
            });
            continue;
        };
        match layered.raw.set(spec.key, value) {
            Ok(()) => {
                layered.origins.insert(spec.key, Origin::Flag(flag));
            }
            Err(message) => errors.push(ConfigError {
                key: spec.key.to_string(),
                origin: Origin::Flag(flag),
                message,
            }),
        }
    }
    Ok((layered, file, errors))
}

fn duration(
    errors: &mut Errors<'_>,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    match value {
        None => default,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(
                    key,
                    format!("invalid duration {text:?} ({e}); use e.g. 30s or 5m"),
                );
                default
            }
        },
    }
}

fn positive(errors: &mut Errors<'_>, key: &str, value: Option<u64>, default: u64) -> usize {
    let v = value.unwrap_or(default);
    if v == 0 {
        errors.push(key, "must be at least 1");
        return default as usize;
    }
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn path_of(value: &Option<String>) -> Option<PathBuf> {
    value
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && (name.parse::<IpAddr>().is_ok()
            || name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
            }))
}

/// Each section in file order, so problems are listed in the order of the keys.
fn validate(
    layered: &Layered,
    profile: Profile,
    file: Option<PathBuf>,
) -> Result<Config, Vec<ConfigError>> {
    let raw = &layered.raw;
    let mut errors = Errors {
        layered,
        list: Vec::new(),
    };
    let e = &mut errors;

    let server = server::validate(e, raw, profile);
    let tls = server::validate_tls(e, raw, profile, &server);
    let auth = auth::validate(e, raw, profile, &server);
    let rate_limit = limits::validate_rate_limit(e, raw);
    let redis = limits::validate_redis(e, raw);
    if rate_limit.store == RateLimitStore::Redis && redis.is_none() {
        e.push(
            "rate_limit.store",
            "\"redis\" needs redis.url (MCP_REDIS_URL), e.g. redis://redis:6379",
        );
    }
    let sessions = limits::validate_sessions(e, raw);
    let docs_dir = PathBuf::from(raw.docs.dir.as_deref().unwrap_or("."));
    let access = auth::validate_access(raw);
    let secrets_poll_interval = duration(
        e,
        "secrets.poll_interval",
        raw.secrets.poll_interval.as_deref(),
        Duration::from_secs(5),
    );
    if secrets_poll_interval < Duration::from_millis(100) {
        e.push("secrets.poll_interval", "must be at least 100ms");
    }
    let log = observe::validate_log(e, raw);
    let (backends, proxy, legacy_sse) = backends::validate(e, raw);
    let https = deploy::https(e, raw, server.listen.port());
    let metrics = deploy::metrics(e, raw);
    let status_page = deploy::status_page(e, raw, &metrics);
    let cluster = cluster::validate(e, raw);
    let otel = observe::validate_otel(e, raw);
    let audit = observe::validate_audit(e, raw, server.transport == Transport::Stdio);

    if !errors.list.is_empty() {
        return Err(errors.list);
    }
    Ok(Config {
        profile,
        config_file: file,
        server,
        tls,
        auth,
        rate_limit,
        sessions,
        docs_dir,
        access,
        secrets_poll_interval,
        log,
        backends,
        proxy,
        legacy_sse,
        https,
        metrics,
        status_page,
        cluster,
        redis,
        otel,
        audit,
    })
}

impl Config {
    /// The effective configuration as TOML-like text. It holds only paths and
    /// settings; secret values never enter [`Config`].
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let p = dir.path().join("edge.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        let env: BTreeMap<&str, &str> = env.iter().copied().collect();
        load(Sources {
            file: path,
            env: &env,
            flags: FlagOverrides::default(),
        })
    }

    #[test]
    fn sibling_resources_replace_the_last_segment() {
        assert_eq!(
            sibling_resource("https://h.test/mcp", "/sse"),
            "https://h.test/sse"
        );
        assert_eq!(
            sibling_resource("https://h.test:8443/api/mcp/", "/messages"),
            "https://h.test:8443/api/messages"
        );
        assert_eq!(
            sibling_resource("https://h.test", "/sse"),
            "https://h.test/sse"
        );
    }

    #[test]
    fn no_configuration_is_the_dev_profile() {
        let c = load_with(None, &[]).unwrap();
        assert_eq!(c.profile, Profile::Dev);
        assert_eq!(c.tls, TlsConfig::SelfSigned);
        assert_eq!(c.auth.mode, AuthMode::ApiKeys);
        assert_eq!(c.auth.api_keys_file, None);
        assert_eq!(c.auth.resource, "https://localhost:8443/mcp");
        assert_eq!(c.server.listen, "127.0.0.1:8443".parse().unwrap());
    }

    #[test]
    fn env_overrides_file_and_names_itself_in_errors() {
        let err = load_with(
            Some("[server]\nport = 9000\n"),
            &[("MCP_PORT", "nope"), ("MCP_RATE_LIMIT", "5/fortnight")],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("server.port (environment variable MCP_PORT)"),
            "{text}"
        );
        assert!(
            text.contains("rate_limit.rate (environment variable MCP_RATE_LIMIT)"),
            "{text}"
        );
    }

    #[test]
    fn all_unknown_file_keys_are_reported_together() {
        let err = load_with(Some("[server]\nprot = 1\n[tls]\ncert = \"x\"\n"), &[]).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["server.prot", "tls.cert"]);
        assert!(err.to_string().contains("edge.toml"));
    }

    #[test]
    fn every_file_value_of_the_wrong_type_is_reported_with_its_key() {
        let err = load_with(
            Some(
                "[server]\nport = \"abc\"\n[otel]\nendpoint = \"http://c:4318\"\n\
                 max_traces_per_second = -1\n[[backends]]\nname = 3\n",
            ),
            &[],
        )
        .unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "backends[0].name",
                "otel.max_traces_per_second",
                "server.port"
            ]
        );
        let text = err.to_string();
        assert!(text.contains("expected u16"), "{text}");
        assert!(text.contains("edge.toml"), "{text}");
    }

    #[test]
    fn a_deployment_needs_certificate_and_keys() {
        let err = load_with(Some("[server]\nport = 9000\n"), &[]).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["tls.cert_file", "tls.key_file", "auth.api_keys_file"]
        );
    }

    #[test]
    fn no_auth_and_plain_http_only_on_loopback() {
        let err = load_with(
            None,
            &[
                ("MCP_HOST", "0.0.0.0"),
                ("MCP_AUTH_MODE", "none"),
                ("MCP_TLS_MODE", "off"),
            ],
        )
        .unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tls.mode", "auth.mode"]);
        let ok = load_with(
            None,
            &[
                ("MCP_HOST", "127.0.0.1"),
                ("MCP_AUTH_MODE", "none"),
                ("MCP_TLS_MODE", "off"),
            ],
        )
        .unwrap();
        assert_eq!(ok.auth.mode, AuthMode::None);
        assert_eq!(ok.profile, Profile::Deployment);
    }

    #[test]
    fn a_word_outside_its_set_names_the_key_its_origin_and_the_allowed_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        std::fs::write(
            &path,
            "[log]\nformat = \"xml\"\n[[backends]]\nname = \"a\"\nkind = \"grpc\"\n",
        )
        .unwrap();
        let env: BTreeMap<&str, &str> =
            [("MCP_TLS_MODE", "maybe"), ("MCP_AUDIT_OUTPUT", " syslog ")]
                .into_iter()
                .collect();
        let flags = FlagOverrides(vec![("server.transport", "--transport", "tcp".into())]);
        let err = load(Sources {
            file: Some(path.clone()),
            env: &env,
            flags,
        })
        .unwrap_err();
        let text = err.to_string();
        let file = path.display();
        for expected in [
            "server.transport (flag --transport): must be \"http\", \"streamable-http\" or \"stdio\", got \"tcp\"".to_owned(),
            "tls.mode (environment variable MCP_TLS_MODE): must be \"files\", \"acme\", \"self-signed\" or \"off\", got \"maybe\"".to_owned(),
            format!("log.format in {file}: must be \"json\" or \"pretty\", got \"xml\""),
            format!("backends[0].kind in {file}: must be \"stdio\", \"http\" or \"docs\", got \"grpc\""),
            "audit.output (environment variable MCP_AUDIT_OUTPUT): must be \"stdout\", \"stderr\", \"file\" or \"off\", got \"syslog\"".to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected}\nnot in:\n{text}");
        }
    }

    #[test]
    fn words_from_the_file_the_environment_and_flags_parse_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        std::fs::write(
            &path,
            "[server]\nhost = \"127.0.0.1\"\n[tls]\nmode = \"off\"\n[auth]\nmode = \"none\"\n\
             [log]\nformat = \"json\"\n[metrics]\nmode = \"off\"\n",
        )
        .unwrap();
        let env: BTreeMap<&str, &str> = [
            ("MCP_OTEL_ENDPOINT", "http://127.0.0.1:4317"),
            ("MCP_OTEL_PROTOCOL", "grpc"),
            ("MCP_REDIS_UNAVAILABLE", "deny"),
            ("MCP_AUDIT_OUTPUT", "stderr"),
        ]
        .into_iter()
        .collect();
        let flags = FlagOverrides(vec![("server.transport", "--transport", "http".into())]);
        let c = load(Sources {
            file: Some(path),
            env: &env,
            flags,
        })
        .unwrap();
        assert_eq!(c.server.transport, Transport::StreamableHttp);
        assert_eq!(c.tls, TlsConfig::Off);
        assert_eq!(c.auth.mode, AuthMode::None);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.metrics, MetricsConfig::Off);
        assert_eq!(c.otel.unwrap().protocol, OtlpProtocol::Grpc);
        assert_eq!(c.rate_limit.redis_unavailable, RedisUnavailable::Deny);
        assert_eq!(c.audit.output, AuditOutput::Stderr);
    }

    #[test]
    fn stdio_needs_no_tls_or_keys() {
        let c = load_with(Some("[server]\ntransport = \"stdio\"\n"), &[]).unwrap();
        assert_eq!(c.server.transport, Transport::Stdio);
    }

    #[test]
    fn rates_parse() {
        let r = Rate::parse("120/min").unwrap();
        assert_eq!(r.period(), Duration::from_millis(500));
        assert!(Rate::parse("0/min").is_err());
        assert!(Rate::parse("12").is_err());
        assert_eq!(Rate::parse("5/s").unwrap().to_string(), "5/s");
    }

    #[test]
    fn lists_from_env_are_comma_separated() {
        let c = load_with(
            None,
            &[("MCP_PUBLIC_HOSTNAMES", "mcp.example.com, Edge.Example.com")],
        )
        .unwrap();
        assert_eq!(
            c.server.public_hostnames,
            ["mcp.example.com", "edge.example.com"]
        );
        let err = load_with(None, &[("MCP_PUBLIC_HOSTNAMES", "https://x.com/")]).unwrap_err();
        assert_eq!(err.0[0].key, "server.public_hostnames");
    }
}
