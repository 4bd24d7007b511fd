//! Configuration: TOML file, then environment variables, then CLI flags.
//!
//! The file is parsed into [`raw::RawConfig`] (unknown keys rejected), overrides are
//! applied onto it with their origin recorded, and [`validate`] turns it into a
//! [`Config`], collecting every problem so the operator sees them all at once. Each
//! error names the key and where its value came from (file + key, env var, or flag).

pub mod backends;
pub mod cluster;
pub mod connections;
pub mod deploy;
pub mod observe;
pub mod raw;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use backends::{BackendConfig, BackendKind, ProxyConfig};
pub use cluster::ClusterConfig;
pub use connections::ConnectionsConfig;
pub use deploy::{AcmeSettings, HttpsConfig, MetricsConfig};
pub use observe::{AuditConfig, AuditOutput, OtelConfig, OtlpProtocol};
pub use raw::{KEYS, KeySpec, RawConfig};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    StreamableHttp,
    Stdio,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum TlsConfig {
    /// PEM certificate chain and private key files.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// A certificate for the public hostnames made in memory at start (dev only).
    SelfSigned,
    /// Plain HTTP, only on a loopback bind (behind a trusted proxy).
    Off,
    /// Certificates from an ACME CA (Let's Encrypt or private), TLS-ALPN-01 on this port.
    Acme(AcmeSettings),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// API keys from a secrets file.
    ApiKeys,
    /// JWTs from an identity provider.
    Jwt,
    /// Either: tokens that look like JWTs are checked as JWTs, others as API keys.
    ApiKeysAndJwt,
    /// No authentication: only allowed on a loopback bind, and only when set explicitly.
    None,
}

impl AuthMode {
    pub fn api_keys(self) -> bool {
        matches!(self, AuthMode::ApiKeys | AuthMode::ApiKeysAndJwt)
    }
    pub fn jwt(self) -> bool {
        matches!(self, AuthMode::Jwt | AuthMode::ApiKeysAndJwt)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtKeyConfig {
    pub kid: Option<String>,
    pub file: PathBuf,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: Vec<String>,
    pub keys: Vec<JwtKeyConfig>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_ca_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub jwks_refresh: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
    pub principal_claim: String,
    /// Put before every JWT principal name so JWT subjects and API-key names never
    /// collide (default `jwt:`); `""` maps a subject onto the API-key principal of that name.
    pub principal_prefix: String,
    pub required_claims: Vec<String>,
    pub tier_claim: Option<String>,
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `None` with API keys means one key generated at start (dev profile only).
    pub api_keys_file: Option<PathBuf>,
    /// This server's canonical resource URI (RFC 8707), the JWT audience by default.
    pub resource: String,
    pub authorization_servers: Vec<String>,
    /// Every protected path with its own resource URI (RFC 9728): `/mcp` (= `resource`),
    /// plus `/sse` and `/messages` when the legacy transport is on.
    pub resources: Vec<(String, String)>,
    /// Scopes every JWT needs to use `/mcp` at all.
    pub required_scopes: Vec<String>,
    pub jwt: Option<JwtConfig>,
    /// Whether `resource` was derived from the listen port (not configured).
    #[serde(skip)]
    pub resource_derived: bool,
}

impl AuthConfig {
    /// Re-derive the resource URI (and the default audience) for the port actually
    /// bound when the configured port was 0.
    pub fn adopt_port(&mut self, port: u16) {
        if !self.resource_derived {
            return;
        }
        let adopt = |uri: &str| uri.replacen(":0/", &format!(":{port}/"), 1);
        let derived: Vec<String> = self.resources.iter().map(|(_, r)| r.clone()).collect();
        self.resource = adopt(&self.resource);
        for (_, resource) in &mut self.resources {
            *resource = adopt(resource);
        }
        if let Some(jwt) = &mut self.jwt {
            for aud in &mut jwt.audience {
                if derived.contains(aud) {
                    *aud = adopt(aud);
                }
            }
        }
    }
}

/// Who may see and call which tool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccessConfig {
    pub tool_scopes: std::collections::BTreeMap<String, Vec<String>>,
    pub default_tool_scopes: Vec<String>,
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

/// A request rate such as `120/min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("expected <count>/<unit> such as 120/min, got {text:?}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate count must be a whole number, got {count:?}"))?;
        let count = NonZeroU32::new(count).ok_or("rate count must be at least 1")?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => {
                return Err(format!("rate unit must be s, min or hour, got {other:?}"));
            }
        };
        Ok(Rate { count, per })
    }

    /// The interval at which one request's worth of capacity comes back.
    pub fn period(&self) -> Duration {
        self.per / self.count.get()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "hour",
        };
        write!(f, "{}/{}", self.count, unit)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub transport: Transport,
    pub public_hostnames: Vec<String>,
    pub allowed_origins: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub handshake_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub first_request_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    /// Timeouts after the first request, caps, trusted proxies.
    pub connections: ConnectionsConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitConfig {
    pub rate: Rate,
    pub burst: NonZeroU32,
    pub failed_auth_rate: Rate,
    pub failed_auth_burst: NonZeroU32,
    pub max_tracked_clients: usize,
    /// Named budgets a keys-file line (`tier=`) or a JWT claim can select.
    pub tiers: std::collections::BTreeMap<String, (Rate, NonZeroU32)>,
    /// The separate per-principal bound on protocol traffic (session set-up,
    /// notifications, GET streams, DELETE, ping, responses).
    pub protocol_rate: Rate,
    pub protocol_burst: NonZeroU32,
    pub store: RateLimitStore,
    pub redis_unavailable: RedisUnavailable,
    /// Replicas sharing the budget; each takes `1 / replicas` while Redis is down.
    pub replicas: NonZeroU32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let rate = |t| Rate::parse(t).expect("default rate parses");
        let n = |v| NonZeroU32::new(v).expect("default is not zero");
        RateLimitConfig {
            rate: rate("120/min"),
            burst: n(30),
            failed_auth_rate: rate("20/min"),
            failed_auth_burst: n(10),
            max_tracked_clients: 100_000,
            tiers: Default::default(),
            protocol_rate: rate("1200/min"),
            protocol_burst: n(300),
            store: RateLimitStore::Local,
            redis_unavailable: RedisUnavailable::Local,
            replicas: NonZeroU32::MIN,
        }
    }
}

/// Where the per-principal budgets and the failed-auth lockout are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitStore {
    Local,
    Redis,
}

/// What the limiter does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisUnavailable {
    /// Each replica applies `budget / replicas` on its own.
    Local,
    /// Refuse calls with 503 and `Retry-After`.
    Deny,
}

/// `[redis]`: shared rate-limit and session-cap state for several replicas.
#[derive(Debug, Clone, Serialize)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`; shown with any password masked.
    #[serde(serialize_with = "ser_redacted_url")]
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// A URL with the password of its user-info replaced, for printing.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn ser_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&redacted_url(url))
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionsConfig {
    pub max_total: usize,
    pub max_per_principal: usize,
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Lifetime sealed into each session id the edge hands out.
    #[serde(serialize_with = "ser_duration")]
    pub id_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
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
}

fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !raw::TABLE_KEYS.contains(&path.as_str()) => {
                key_paths(t, &path, out)
            }
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
            None => match raw::TABLE_KEYS.iter().find(|k| *k == key) {
                Some(table_key) => known.push(table_key),
                None => errors.push(file_err(key, "unknown key".into())),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let raw: RawConfig = toml::from_str(&text).map_err(|e| {
        vec![file_err(
            "(file)",
            format!("invalid value: {}", e.message().trim()),
        )]
    })?;
    Ok((raw, known))
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

fn rate(errors: &mut Errors<'_>, key: &str, value: Option<&str>, default: &str) -> Rate {
    let text = value.unwrap_or(default);
    Rate::parse(text).unwrap_or_else(|e| {
        errors.push(key, e);
        Rate::parse(default).expect("default rate parses")
    })
}

fn nonzero(errors: &mut Errors<'_>, key: &str, value: Option<u32>, default: u32) -> NonZeroU32 {
    let v = value.unwrap_or(default);
    NonZeroU32::new(v).unwrap_or_else(|| {
        errors.push(key, "must be at least 1");
        NonZeroU32::MIN
    })
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

/// `https://host/mcp` + `/sse` → `https://host/sse`: the last path segment replaced.
pub fn sibling_resource(resource: &str, path: &str) -> String {
    let (origin, resource_path) = match resource.find("://") {
        Some(i) => match resource[i + 3..].find('/') {
            Some(j) => resource.split_at(i + 3 + j),
            None => (resource, ""),
        },
        None => (resource, ""),
    };
    let parent = resource_path
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(parent, _)| parent)
        .unwrap_or("");
    format!("{origin}{parent}{path}")
}

/// JWT principals are `jwt:<sub>` unless `auth.jwt.principal_prefix` says otherwise.
pub const DEFAULT_JWT_PRINCIPAL_PREFIX: &str = "jwt:";

#[allow(clippy::too_many_arguments)]
fn validate_auth(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    profile: Profile,
    transport: Transport,
    loopback: bool,
    ip: IpAddr,
    listen: SocketAddr,
    public_hostnames: &[String],
) -> AuthConfig {
    let network = transport == Transport::StreamableHttp;
    let mode = match raw.auth.mode.as_deref() {
        None => {
            if raw.auth.jwt.issuer.is_some() && raw.auth.api_keys_file.is_none() {
                AuthMode::Jwt
            } else if raw.auth.jwt.issuer.is_some() {
                AuthMode::ApiKeysAndJwt
            } else {
                AuthMode::ApiKeys
            }
        }
        Some("api-keys") => AuthMode::ApiKeys,
        Some("jwt") => AuthMode::Jwt,
        Some("api-keys+jwt") => AuthMode::ApiKeysAndJwt,
        Some("none") => {
            if !loopback && network {
                e.push(
                    "auth.mode",
                    format!("\"none\" is only allowed on a loopback bind, but server.host is {ip}"),
                );
            }
            AuthMode::None
        }
        Some(other) => {
            e.push(
                "auth.mode",
                format!(
                    "must be \"api-keys\", \"jwt\", \"api-keys+jwt\" or \"none\", got {other:?}"
                ),
            );
            AuthMode::None
        }
    };
    let api_keys_file = path_of(&raw.auth.api_keys_file);
    if mode.api_keys() && api_keys_file.is_none() && profile != Profile::Dev && network {
        e.push(
            "auth.api_keys_file",
            "is required: a network listener needs auth (set MCP_API_KEYS_FILE, configure auth.jwt, or auth.mode = \"none\" on a loopback bind)",
        );
    }
    let host = public_hostnames
        .first()
        .map(String::as_str)
        .unwrap_or("localhost");
    let resource = raw
        .auth
        .resource
        .clone()
        .unwrap_or_else(|| match listen.port() {
            443 => format!("https://{host}/mcp"),
            port => format!("https://{host}:{port}/mcp"),
        });
    if !resource.starts_with("https://") && !resource.starts_with("http://") {
        e.push(
            "auth.resource",
            format!("{resource:?} must be an absolute https:// URI"),
        );
    }
    if resource.contains('#') {
        e.push("auth.resource", "must not contain a fragment (RFC 8707)");
    }
    let mut resources = vec![("/mcp".to_owned(), resource.clone())];
    if raw.legacy_sse.enabled == Some(true) {
        for path in ["/sse", "/messages"] {
            resources.push((path.to_owned(), sibling_resource(&resource, path)));
        }
    }
    let required_scopes = raw.auth.required_scopes.clone().unwrap_or_default();
    let j = &raw.auth.jwt;
    let jwt = if mode.jwt() {
        let issuer = match &j.issuer {
            Some(i) if !i.is_empty() => i.clone(),
            _ => {
                e.push(
                    "auth.jwt.issuer",
                    "is required when JWTs are accepted (set MCP_JWT_ISSUER)",
                );
                String::new()
            }
        };
        let parse_algs = |e: &mut Errors<'_>,
                          key: &str,
                          names: &[String]|
         -> Vec<jsonwebtoken::Algorithm> {
            let mut algs = Vec::new();
            for name in names {
                match name.trim().parse::<jsonwebtoken::Algorithm>() {
                    Ok(a) => algs.push(a),
                    Err(_) => e.push(
                        key,
                        format!("unknown algorithm {name:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA; \"none\" is never accepted)"),
                    ),
                }
            }
            if names.is_empty() {
                e.push(key, "list at least one algorithm for the key");
            }
            let families: std::collections::BTreeSet<_> =
                algs.iter().map(|a| format!("{:?}", a.family())).collect();
            if families.len() > 1 {
                e.push(
                    key,
                    "one key's algorithms must all be of one family (HMAC, RSA, EC or EdDSA)",
                );
            }
            algs
        };
        let mut keys = Vec::new();
        match (path_of(&j.key_file), &j.algorithms) {
            (Some(file), Some(names)) => keys.push(JwtKeyConfig {
                kid: None,
                file,
                algorithms: parse_algs(e, "auth.jwt.algorithms", names),
            }),
            (Some(_), None) => e.push(
                "auth.jwt.algorithms",
                "is required with auth.jwt.key_file: name the algorithms this key may verify (e.g. RS256)",
            ),
            (None, Some(_)) => e.push("auth.jwt.key_file", "is required with auth.jwt.algorithms"),
            (None, None) => {}
        }
        for key in j.keys.clone().unwrap_or_default() {
            keys.push(JwtKeyConfig {
                kid: key.kid.clone(),
                file: PathBuf::from(&key.file),
                algorithms: parse_algs(e, "auth.jwt.keys", &key.algorithms),
            });
        }
        let jwks_file = path_of(&j.jwks_file);
        let jwks_url = j.jwks_url.clone().filter(|u| !u.is_empty());
        if let Some(url) = &jwks_url
            && !(url.starts_with("https://")
                || url.starts_with("http://127.")
                || url.starts_with("http://localhost"))
        {
            e.push(
                "auth.jwt.jwks_url",
                "must be https:// (plain http only for loopback)",
            );
        }
        if keys.is_empty() && jwks_file.is_none() && jwks_url.is_none() {
            e.push(
                "auth.jwt.key_file",
                "JWTs need verification keys: set auth.jwt.key_file + algorithms, [[auth.jwt.keys]], auth.jwt.jwks_file or auth.jwt.jwks_url",
            );
        }
        let max_token_bytes = j.max_token_bytes.unwrap_or(8192);
        if !(256..=65536).contains(&max_token_bytes) {
            e.push("auth.jwt.max_token_bytes", "must be between 256 and 65536");
        }
        Some(JwtConfig {
            issuer,
            // A token for any of this server's protected paths is good on all of them
            // (an SSE client gets one for `/sse` and sends it to `/messages` too).
            audience: j
                .audience
                .clone()
                .unwrap_or_else(|| resources.iter().map(|(_, r)| r.clone()).collect()),
            keys,
            jwks_file,
            jwks_url,
            jwks_ca_file: path_of(&j.jwks_ca_file),
            jwks_refresh: duration(
                e,
                "auth.jwt.jwks_refresh",
                j.jwks_refresh.as_deref(),
                Duration::from_secs(600),
            ),
            leeway: duration(
                e,
                "auth.jwt.leeway",
                j.leeway.as_deref(),
                Duration::from_secs(60),
            ),
            principal_claim: j.principal_claim.clone().unwrap_or_else(|| "sub".into()),
            principal_prefix: j
                .principal_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_JWT_PRINCIPAL_PREFIX.into()),
            required_claims: j.required_claims.clone().unwrap_or_default(),
            tier_claim: j.tier_claim.clone(),
            max_token_bytes: max_token_bytes as usize,
        })
    } else {
        None
    };
    AuthConfig {
        mode,
        api_keys_file,
        resource_derived: raw.auth.resource.is_none(),
        resource: resource.clone(),
        resources,
        authorization_servers: raw
            .auth
            .authorization_servers
            .clone()
            .or_else(|| jwt.as_ref().map(|j| vec![j.issuer.clone()]))
            .unwrap_or_default(),
        required_scopes,
        jwt,
    }
}

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

    let transport = match raw.server.transport.as_deref() {
        None | Some("streamable-http") | Some("http") => Transport::StreamableHttp,
        Some("stdio") => Transport::Stdio,
        Some(other) => {
            e.push(
                "server.transport",
                format!("must be \"streamable-http\" or \"stdio\", got {other:?}"),
            );
            Transport::StreamableHttp
        }
    };

    // The dev profile stays on this machine; a deployment listens everywhere (containers).
    let default_host = match profile {
        Profile::Dev => "127.0.0.1",
        Profile::Deployment => "0.0.0.0",
    };
    let host_text = raw.server.host.as_deref().unwrap_or(default_host);
    let host_text = host_text.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host_text {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        text => text.parse().unwrap_or_else(|_| {
            e.push(
                "server.host",
                format!("must be an IP address to bind (e.g. 0.0.0.0 or 127.0.0.1), got {text:?}"),
            );
            IpAddr::from([127, 0, 0, 1])
        }),
    };
    let port = raw.server.port.unwrap_or(8443);
    let listen = SocketAddr::new(ip, port);
    let loopback = ip.is_loopback();

    let mut public_hostnames = raw
        .server
        .public_hostnames
        .clone()
        .unwrap_or_else(|| vec!["localhost".into()]);
    for name in &mut public_hostnames {
        *name = name.trim().to_ascii_lowercase();
    }
    public_hostnames.retain(|n| !n.is_empty());
    for name in &public_hostnames {
        if !valid_hostname(name) {
            e.push(
                "server.public_hostnames",
                format!("{name:?} is not a hostname (give names only, no scheme or port)"),
            );
        }
    }
    if public_hostnames.is_empty() {
        e.push("server.public_hostnames", "must name at least one hostname");
    }
    let allowed_origins = raw.server.allowed_origins.clone().unwrap_or_default();
    for origin in &allowed_origins {
        if origin != "null" && !(origin.starts_with("https://") || origin.starts_with("http://")) {
            e.push(
                "server.allowed_origins",
                format!("{origin:?} must start with https:// or http://"),
            );
        }
    }

    let handshake_timeout = duration(
        e,
        "server.handshake_timeout",
        raw.server.handshake_timeout.as_deref(),
        Duration::from_secs(10),
    );
    let first_request_timeout = duration(
        e,
        "server.first_request_timeout",
        raw.server.first_request_timeout.as_deref(),
        Duration::from_secs(15),
    );
    let shutdown_grace = duration(
        e,
        "server.shutdown_grace",
        raw.server.shutdown_grace.as_deref(),
        Duration::from_secs(30),
    );
    let max_body_bytes = positive(
        e,
        "server.max_body_bytes",
        raw.server.max_body_bytes,
        4 << 20,
    );

    let connections = connections::validate(e, raw);

    let cert_file = path_of(&raw.tls.cert_file);
    let key_file = path_of(&raw.tls.key_file);
    let tls = match raw.tls.mode.as_deref() {
        None | Some("files") => match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => TlsConfig::Files {
                cert_file,
                key_file,
            },
            (None, None) if profile == Profile::Dev => TlsConfig::SelfSigned,
            (cert, key) => {
                if transport == Transport::StreamableHttp {
                    if cert.is_none() {
                        e.push(
                            "tls.cert_file",
                            "is required (PEM certificate chain, e.g. /run/secrets/tls_cert); set MCP_TLS_CERT_FILE or tls.cert_file",
                        );
                    }
                    if key.is_none() {
                        e.push(
                            "tls.key_file",
                            "is required (PEM private key, e.g. /run/secrets/tls_key); set MCP_TLS_KEY_FILE or tls.key_file",
                        );
                    }
                }
                TlsConfig::Off
            }
        },
        Some("self-signed") => TlsConfig::SelfSigned,
        Some("acme") => TlsConfig::Acme(deploy::acme(e, raw, &public_hostnames)),
        Some("off") => {
            if !loopback && transport == Transport::StreamableHttp {
                e.push(
                    "tls.mode",
                    format!(
                        "\"off\" (plain HTTP) is only allowed on a loopback bind behind a trusted proxy, but server.host is {ip}"
                    ),
                );
            }
            TlsConfig::Off
        }
        Some(other) => {
            e.push(
                "tls.mode",
                format!("must be \"files\", \"acme\", \"self-signed\" or \"off\", got {other:?}"),
            );
            TlsConfig::Off
        }
    };

    let auth = validate_auth(
        e,
        raw,
        profile,
        transport,
        loopback,
        ip,
        listen,
        &public_hostnames,
    );
    let rl = &raw.rate_limit;
    let rate_limit = RateLimitConfig {
        rate: rate(e, "rate_limit.rate", rl.rate.as_deref(), "120/min"),
        burst: nonzero(e, "rate_limit.burst", rl.burst, 30),
        failed_auth_rate: rate(
            e,
            "rate_limit.failed_auth_rate",
            rl.failed_auth_rate.as_deref(),
            "20/min",
        ),
        failed_auth_burst: nonzero(e, "rate_limit.failed_auth_burst", rl.failed_auth_burst, 10),
        max_tracked_clients: positive(
            e,
            "rate_limit.max_tracked_clients",
            rl.max_tracked_clients,
            100_000,
        ),
        tiers: rl
            .tiers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, tier)| match Rate::parse(&tier.rate) {
                Ok(rate) => {
                    let burst = tier.burst.unwrap_or(rate.count.get());
                    match NonZeroU32::new(burst) {
                        Some(burst) => Some((name, (rate, burst))),
                        None => {
                            e.push(
                                "rate_limit.tiers",
                                format!("tier {name:?}: burst must be at least 1"),
                            );
                            None
                        }
                    }
                }
                Err(msg) => {
                    e.push("rate_limit.tiers", format!("tier {name:?}: {msg}"));
                    None
                }
            })
            .collect(),
        protocol_rate: rate(
            e,
            "rate_limit.protocol_rate",
            rl.protocol_rate.as_deref(),
            "1200/min",
        ),
        protocol_burst: nonzero(e, "rate_limit.protocol_burst", rl.protocol_burst, 300),
        store: match rl.store.as_deref() {
            None | Some("local") => RateLimitStore::Local,
            Some("redis") => RateLimitStore::Redis,
            Some(other) => {
                e.push(
                    "rate_limit.store",
                    format!("must be \"local\" or \"redis\", got {other:?}"),
                );
                RateLimitStore::Local
            }
        },
        redis_unavailable: match rl.redis_unavailable.as_deref() {
            None | Some("local") => RedisUnavailable::Local,
            Some("deny") => RedisUnavailable::Deny,
            Some(other) => {
                e.push(
                    "rate_limit.redis_unavailable",
                    format!("must be \"local\" or \"deny\", got {other:?}"),
                );
                RedisUnavailable::Local
            }
        },
        replicas: nonzero(e, "rate_limit.replicas", rl.replicas, 1),
    };
    let redis = redis(e, raw);
    if rate_limit.store == RateLimitStore::Redis && redis.is_none() {
        e.push(
            "rate_limit.store",
            "\"redis\" needs redis.url (MCP_REDIS_URL), e.g. redis://redis:6379",
        );
    }

    let sessions = SessionsConfig {
        max_total: positive(e, "sessions.max_total", raw.sessions.max_total, 1000),
        max_per_principal: positive(
            e,
            "sessions.max_per_principal",
            raw.sessions.max_per_principal,
            50,
        ),
        idle_timeout: duration(
            e,
            "sessions.idle_timeout",
            raw.sessions.idle_timeout.as_deref(),
            Duration::from_secs(300),
        ),
        id_ttl: duration(
            e,
            "sessions.id_ttl",
            raw.sessions.id_ttl.as_deref(),
            Duration::from_secs(24 * 3600),
        ),
    };
    if sessions.id_ttl < Duration::from_secs(1) {
        e.push("sessions.id_ttl", "must be at least 1s");
    }

    let docs_dir = PathBuf::from(raw.docs.dir.as_deref().unwrap_or("."));
    let access = AccessConfig {
        tool_scopes: raw.access.tool_scopes.clone().unwrap_or_default(),
        default_tool_scopes: raw.access.default_tool_scopes.clone().unwrap_or_default(),
        groups: raw.access.groups.clone().unwrap_or_default(),
    };
    let secrets_poll_interval = duration(
        e,
        "secrets.poll_interval",
        raw.secrets.poll_interval.as_deref(),
        Duration::from_secs(5),
    );
    if secrets_poll_interval < Duration::from_millis(100) {
        e.push("secrets.poll_interval", "must be at least 100ms");
    }

    let format = match raw.log.format.as_deref() {
        None | Some("pretty") => LogFormat::Pretty,
        Some("json") => LogFormat::Json,
        Some(other) => {
            e.push(
                "log.format",
                format!("must be \"json\" or \"pretty\", got {other:?}"),
            );
            LogFormat::Pretty
        }
    };
    let level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        e.push(
            "log.level",
            format!("{level:?} is not a level or filter (e.g. info, debug, mcp_edge=debug)"),
        );
    }

    let (backends, proxy, legacy_sse) = backends::validate(e, raw);
    let https = deploy::https(e, raw, port);
    let metrics = deploy::metrics(e, raw);
    let cluster = cluster::validate(e, raw);
    let otel = observe::validate_otel(e, raw);
    let audit = observe::validate_audit(e, raw, transport == Transport::Stdio);

    if !errors.list.is_empty() {
        return Err(errors.list);
    }
    Ok(Config {
        profile,
        config_file: file,
        server: ServerConfig {
            listen,
            transport,
            public_hostnames,
            allowed_origins,
            handshake_timeout,
            first_request_timeout,
            shutdown_grace,
            max_body_bytes,
            connections,
        },
        tls,
        auth,
        rate_limit,
        sessions,
        docs_dir,
        access,
        secrets_poll_interval,
        log: LogConfig { format, level },
        backends,
        proxy,
        legacy_sse,
        https,
        metrics,
        cluster,
        redis,
        otel,
        audit,
    })
}

/// `[redis]`, checked without connecting: the URL parses, and TLS options fit it.
fn redis(e: &mut Errors<'_>, raw: &RawConfig) -> Option<RedisConfig> {
    let r = &raw.redis;
    let timeout = duration(
        e,
        "redis.timeout",
        r.timeout.as_deref(),
        Duration::from_millis(250),
    );
    let Some(url) = r.url.clone() else {
        for (key, set) in [
            ("redis.password_file", r.password_file.is_some()),
            ("redis.ca_file", r.ca_file.is_some()),
        ] {
            if set {
                e.push(key, "is set but redis.url (MCP_REDIS_URL) is not");
            }
        }
        return None;
    };
    let parsed = url::Url::parse(&url).ok().filter(|u| {
        matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    let Some(parsed) = parsed.filter(|_| redis::Client::open(url.as_str()).is_ok()) else {
        e.push(
            "redis.url",
            format!(
                "{:?} is not a redis:// or rediss:// URL (e.g. rediss://redis.internal:6379/0)",
                redacted_url(&url)
            ),
        );
        return None;
    };
    if parsed.password().is_some() && r.password_file.is_some() {
        e.push(
            "redis.url",
            "holds a password and redis.password_file is set too: keep the password in the file only",
        );
    }
    if r.ca_file.is_some() && parsed.scheme() != "rediss" {
        e.push("redis.ca_file", "is only used with a rediss:// URL");
    }
    Some(RedisConfig {
        url,
        password_file: path_of(&r.password_file),
        ca_file: path_of(&r.ca_file),
        timeout,
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
