//! The configuration as written: every field optional, unknown keys rejected.
//! Environment variables and CLI flags are applied onto this before validation.

use std::fmt;

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer};

use super::{
    AuthMode, LogFormat, MetricsMode, RateLimitStore, RedisUnavailable, TlsMode, Transport,
};

/// The value of a key that names one of a fixed set of words (`tls.mode`,
/// `auth.mode`, …), parsed by serde into the enum `T`, from the file and from
/// environment variables and flags alike. A word outside the set is kept rather than
/// rejected here, so validation reports it with its key and origin together with
/// every other problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice<T> {
    Known(T),
    Unknown(UnknownChoice),
}

/// A word outside a [`Choice`]'s set, and the set, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChoice {
    pub got: String,
    pub allowed: &'static [&'static str],
}

impl<T: DeserializeOwned> Choice<T> {
    /// Surrounding whitespace is ignored, as it is for every string from the environment.
    pub fn parse(text: &str) -> Choice<T> {
        let text = text.trim();
        match T::deserialize(de::value::StrDeserializer::<NotInSet>::new(text)) {
            Ok(value) => Choice::Known(value),
            Err(NotInSet(allowed)) => Choice::Unknown(UnknownChoice {
                got: text.to_owned(),
                allowed,
            }),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Choice::parse(&text))
    }
}

/// `must be "a", "b" or "c", got "x"`.
impl fmt::Display for UnknownChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.allowed.iter().map(|v| format!("{v:?}")).collect();
        match quoted.split_last() {
            Some((last, [])) => write!(f, "must be {last}")?,
            Some((last, rest)) => write!(f, "must be {} or {last}", rest.join(", "))?,
            None => write!(f, "is not a known value")?,
        }
        write!(f, ", got {:?}", self.got)
    }
}

/// The error of parsing one word into an enum: serde hands over the enum's words
/// (its variants and their aliases), which is all a [`Choice`] needs.
#[derive(Debug)]
struct NotInSet(&'static [&'static str]);

impl de::Error for NotInSet {
    fn custom<M: fmt::Display>(_: M) -> Self {
        NotInSet(&[])
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        NotInSet(expected)
    }
}

impl fmt::Display for NotInSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected one of {:?}", self.0)
    }
}

impl std::error::Error for NotInSet {}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub docs: RawDocs,
    #[serde(default)]
    pub access: RawAccess,
    #[serde(default)]
    pub secrets: RawSecrets,
    #[serde(default)]
    pub log: RawLog,
    /// `[[backends]]`: MCP servers behind the edge (none = the built-in docs tools).
    #[serde(default)]
    pub backends: Vec<super::backends::RawBackend>,
    #[serde(default)]
    pub proxy: super::backends::RawProxy,
    #[serde(default)]
    pub legacy_sse: super::backends::RawLegacySse,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub cluster: super::cluster::RawCluster,
    #[serde(default)]
    pub otel: super::observe::RawOtel,
    #[serde(default)]
    pub audit: super::observe::RawAudit,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub transport: Option<Choice<Transport>>,
    pub public_hostnames: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub handshake_timeout: Option<String>,
    pub first_request_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub http_redirect_port: Option<u16>,
    pub public_https_port: Option<u16>,
    pub hsts_max_age: Option<String>,
    pub idle_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub http2_keepalive_interval: Option<String>,
    pub http2_keepalive_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    pub proxy_protocol_from: Option<Vec<String>>,
    pub trusted_forwarders: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub mode: Option<Choice<TlsMode>>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub mode: Option<Choice<AuthMode>>,
    pub api_keys_file: Option<String>,
    pub resource: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub required_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub jwt: RawJwt,
    #[serde(default)]
    pub oauth: super::oauth::RawOAuth,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub key_file: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub keys: Option<Vec<RawJwtKey>>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_ca_file: Option<String>,
    pub jwks_refresh: Option<String>,
    pub leeway: Option<String>,
    pub principal_claim: Option<String>,
    pub principal_prefix: Option<String>,
    pub required_claims: Option<Vec<String>>,
    pub tier_claim: Option<String>,
    pub max_token_bytes: Option<u64>,
}

/// One entry of `[[auth.jwt.keys]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtKey {
    pub kid: Option<String>,
    pub file: String,
    pub algorithms: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// Tool name or glob (`github__*`) → scopes a JWT needs to see and call it.
    pub tool_scopes: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Scopes needed for tools no `tool_scopes` entry matches.
    pub default_tool_scopes: Option<Vec<String>>,
    /// Named tool lists that keys-file lines reference as `tools=@name`.
    pub groups: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub rate: String,
    pub burst: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub poll_interval: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub failed_auth_rate: Option<String>,
    pub failed_auth_burst: Option<u32>,
    pub max_tracked_clients: Option<u64>,
    pub tiers: Option<std::collections::BTreeMap<String, RawTier>>,
    pub protocol_rate: Option<String>,
    pub protocol_burst: Option<u32>,
    pub store: Option<Choice<RateLimitStore>>,
    pub redis_unavailable: Option<Choice<RedisUnavailable>>,
    pub replicas: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub max_total: Option<u64>,
    pub max_per_principal: Option<u64>,
    pub idle_timeout: Option<String>,
    pub id_ttl: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocs {
    pub dir: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<Choice<LogFormat>>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub domains: Option<Vec<String>>,
    pub contact: Option<Vec<String>>,
    pub directory: Option<String>,
    pub ca_bundle: Option<String>,
    pub cache_dir: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub mode: Option<Choice<MetricsMode>>,
    pub admin_listen: Option<String>,
    pub status_page: Option<bool>,
    pub status_token_file: Option<String>,
}

/// Sets one key of a [`RawConfig`] from a string (an environment variable or a flag).
pub type Setter = fn(&mut RawConfig, &str) -> Result<(), String>;

/// One overridable key: its path in the TOML file, the environment variable for it,
/// and how a string value is stored (so a new key is one line of [`KEYS`]).
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    pub env: &'static str,
    pub set: Setter,
}

/// `key!(setter, section.field, ENV_VAR)`: the file key is the field's path, so the
/// two cannot drift apart; the setter stores the string into that field.
macro_rules! key {
    ($set:ident, $first:ident $(. $rest:ident)*, $env:ident) => {
        KeySpec {
            key: concat!(stringify!($first) $(, ".", stringify!($rest))*),
            env: stringify!($env),
            set: |raw, value| $set(&mut raw.$first $(.$rest)*, value),
        }
    };
}

/// Every key the server knows, in file order. The example config and `.env.example`
/// are tested against this list, so adding a key here without documenting it fails CI.
pub const KEYS: &[KeySpec] = &[
    key!(text, server.host, MCP_HOST),
    key!(number, server.port, MCP_PORT),
    key!(choice, server.transport, MCP_TRANSPORT),
    key!(list, server.public_hostnames, MCP_PUBLIC_HOSTNAMES),
    key!(list, server.allowed_origins, MCP_ALLOWED_ORIGINS),
    key!(text, server.handshake_timeout, MCP_HANDSHAKE_TIMEOUT),
    key!(
        text,
        server.first_request_timeout,
        MCP_FIRST_REQUEST_TIMEOUT
    ),
    key!(text, server.shutdown_grace, MCP_SHUTDOWN_GRACE),
    key!(number, server.max_body_bytes, MCP_MAX_BODY_BYTES),
    key!(number, server.http_redirect_port, MCP_HTTP_REDIRECT_PORT),
    key!(number, server.public_https_port, MCP_PUBLIC_HTTPS_PORT),
    key!(text, server.hsts_max_age, MCP_HSTS_MAX_AGE),
    key!(text, server.idle_timeout, MCP_IDLE_TIMEOUT),
    key!(text, server.header_read_timeout, MCP_HEADER_READ_TIMEOUT),
    key!(text, server.body_read_timeout, MCP_BODY_READ_TIMEOUT),
    key!(
        text,
        server.http2_keepalive_interval,
        MCP_HTTP2_KEEPALIVE_INTERVAL
    ),
    key!(
        text,
        server.http2_keepalive_timeout,
        MCP_HTTP2_KEEPALIVE_TIMEOUT
    ),
    key!(number, server.max_connections, MCP_MAX_CONNECTIONS),
    key!(
        number,
        server.max_connections_per_ip,
        MCP_MAX_CONNECTIONS_PER_IP
    ),
    key!(list, server.proxy_protocol_from, MCP_PROXY_PROTOCOL_FROM),
    key!(list, server.trusted_forwarders, MCP_TRUSTED_FORWARDERS),
    key!(choice, tls.mode, MCP_TLS_MODE),
    key!(text, tls.cert_file, MCP_TLS_CERT_FILE),
    key!(text, tls.key_file, MCP_TLS_KEY_FILE),
    key!(list, acme.domains, MCP_ACME_DOMAINS),
    key!(list, acme.contact, MCP_ACME_CONTACT),
    key!(text, acme.directory, MCP_ACME_DIRECTORY),
    key!(text, acme.ca_bundle, MCP_ACME_CA_BUNDLE),
    key!(text, acme.cache_dir, MCP_ACME_CACHE_DIR),
    key!(choice, auth.mode, MCP_AUTH_MODE),
    key!(text, auth.api_keys_file, MCP_API_KEYS_FILE),
    key!(text, auth.resource, MCP_RESOURCE_URI),
    key!(list, auth.authorization_servers, MCP_AUTHORIZATION_SERVERS),
    key!(words, auth.required_scopes, MCP_REQUIRED_SCOPES),
    key!(text, auth.jwt.issuer, MCP_JWT_ISSUER),
    key!(list, auth.jwt.audience, MCP_JWT_AUDIENCE),
    key!(text, auth.jwt.key_file, MCP_JWT_KEY_FILE),
    key!(list, auth.jwt.algorithms, MCP_JWT_ALGORITHMS),
    key!(text, auth.jwt.jwks_file, MCP_JWT_JWKS_FILE),
    key!(text, auth.jwt.jwks_url, MCP_JWT_JWKS_URL),
    key!(text, auth.jwt.jwks_ca_file, MCP_JWT_JWKS_CA_FILE),
    key!(text, auth.jwt.jwks_refresh, MCP_JWT_JWKS_REFRESH),
    key!(text, auth.jwt.leeway, MCP_JWT_LEEWAY),
    key!(text, auth.jwt.principal_claim, MCP_JWT_PRINCIPAL_CLAIM),
    key!(text, auth.jwt.principal_prefix, MCP_JWT_PRINCIPAL_PREFIX),
    key!(list, auth.jwt.required_claims, MCP_JWT_REQUIRED_CLAIMS),
    key!(text, auth.jwt.tier_claim, MCP_JWT_TIER_CLAIM),
    key!(number, auth.jwt.max_token_bytes, MCP_JWT_MAX_TOKEN_BYTES),
    key!(flag, auth.oauth.enabled, MCP_OAUTH),
    key!(
        text,
        auth.oauth.signing_key_file,
        MCP_OAUTH_SIGNING_KEY_FILE
    ),
    key!(
        text,
        auth.oauth.access_token_ttl,
        MCP_OAUTH_ACCESS_TOKEN_TTL
    ),
    key!(
        text,
        auth.oauth.refresh_token_ttl,
        MCP_OAUTH_REFRESH_TOKEN_TTL
    ),
    key!(flag, auth.oauth.api_key_sign_in, MCP_OAUTH_API_KEY_SIGN_IN),
    key!(flag, auth.oauth.registration, MCP_OAUTH_REGISTRATION),
    key!(
        text,
        auth.oauth.registration_rate,
        MCP_OAUTH_REGISTRATION_RATE
    ),
    key!(
        flag,
        auth.oauth.client_metadata_documents,
        MCP_OAUTH_CLIENT_METADATA_DOCUMENTS
    ),
    key!(
        flag,
        auth.oauth.metadata_allow_private,
        MCP_OAUTH_METADATA_ALLOW_PRIVATE
    ),
    key!(
        text,
        auth.oauth.metadata_ca_file,
        MCP_OAUTH_METADATA_CA_FILE
    ),
    key!(list, auth.oauth.key_only_hosts, MCP_OAUTH_KEY_ONLY_HOSTS),
    key!(text, auth.oauth.oidc.issuer, MCP_OAUTH_OIDC_ISSUER),
    key!(text, auth.oauth.oidc.client_id, MCP_OAUTH_OIDC_CLIENT_ID),
    key!(
        text,
        auth.oauth.oidc.client_secret_file,
        MCP_OAUTH_OIDC_CLIENT_SECRET_FILE
    ),
    key!(text, auth.oauth.oidc.name, MCP_OAUTH_OIDC_NAME),
    key!(words, auth.oauth.oidc.scopes, MCP_OAUTH_OIDC_SCOPES),
    key!(
        text,
        auth.oauth.oidc.principal_claim,
        MCP_OAUTH_OIDC_PRINCIPAL_CLAIM
    ),
    key!(
        list,
        auth.oauth.oidc.allowed_domains,
        MCP_OAUTH_OIDC_ALLOWED_DOMAINS
    ),
    key!(
        text,
        auth.oauth.oidc.groups_claim,
        MCP_OAUTH_OIDC_GROUPS_CLAIM
    ),
    key!(
        list,
        auth.oauth.oidc.allowed_groups,
        MCP_OAUTH_OIDC_ALLOWED_GROUPS
    ),
    key!(text, auth.oauth.oidc.ca_file, MCP_OAUTH_OIDC_CA_FILE),
    key!(text, rate_limit.rate, MCP_RATE_LIMIT),
    key!(number, rate_limit.burst, MCP_RATE_BURST),
    key!(text, rate_limit.failed_auth_rate, MCP_FAILED_AUTH_RATE),
    key!(number, rate_limit.failed_auth_burst, MCP_FAILED_AUTH_BURST),
    key!(number, rate_limit.max_tracked_clients, MCP_RATE_MAX_TRACKED),
    key!(text, rate_limit.protocol_rate, MCP_PROTOCOL_RATE),
    key!(number, rate_limit.protocol_burst, MCP_PROTOCOL_BURST),
    key!(choice, rate_limit.store, MCP_RATE_LIMIT_STORE),
    key!(choice, rate_limit.redis_unavailable, MCP_REDIS_UNAVAILABLE),
    key!(number, rate_limit.replicas, MCP_REPLICAS),
    key!(text, redis.url, MCP_REDIS_URL),
    key!(text, redis.password_file, MCP_REDIS_PASSWORD_FILE),
    key!(text, redis.ca_file, MCP_REDIS_CA_FILE),
    key!(text, redis.timeout, MCP_REDIS_TIMEOUT),
    key!(number, sessions.max_total, MCP_MAX_SESSIONS),
    key!(
        number,
        sessions.max_per_principal,
        MCP_MAX_SESSIONS_PER_PRINCIPAL
    ),
    key!(text, sessions.idle_timeout, MCP_SESSION_IDLE_TIMEOUT),
    key!(text, sessions.id_ttl, MCP_SESSION_ID_TTL),
    key!(text, docs.dir, MCP_DOCS_DIR),
    key!(text, secrets.poll_interval, MCP_SECRETS_POLL_INTERVAL),
    key!(choice, log.format, MCP_LOG_FORMAT),
    key!(text, log.level, MCP_LOG_LEVEL),
    key!(choice, metrics.mode, MCP_METRICS_MODE),
    key!(text, metrics.admin_listen, MCP_METRICS_LISTEN),
    key!(flag, metrics.status_page, MCP_STATUS_PAGE),
    key!(text, metrics.status_token_file, MCP_STATUS_TOKEN_FILE),
    key!(text, proxy.call_timeout, MCP_CALL_TIMEOUT),
    key!(text, proxy.spawn_timeout, MCP_SPAWN_TIMEOUT),
    key!(number, proxy.max_children, MCP_MAX_CHILDREN),
    key!(number, proxy.pool_size, MCP_POOL_SIZE),
    key!(text, proxy.pool_idle_timeout, MCP_POOL_IDLE_TIMEOUT),
    key!(text, proxy.kill_grace, MCP_KILL_GRACE),
    key!(text, proxy.restart_backoff_max, MCP_RESTART_BACKOFF_MAX),
    key!(text, proxy.input_timeout, MCP_INPUT_TIMEOUT),
    key!(number, proxy.max_pending_inputs, MCP_MAX_PENDING_INPUTS),
    key!(flag, legacy_sse.enabled, MCP_LEGACY_SSE),
    key!(text, cluster.peer_listen, MCP_PEER_LISTEN),
    key!(text, cluster.advertise, MCP_PEER_ADVERTISE),
    key!(text, cluster.key_ring_file, MCP_SESSION_KEYS_FILE),
    key!(text, otel.endpoint, MCP_OTEL_ENDPOINT),
    key!(choice, otel.protocol, MCP_OTEL_PROTOCOL),
    key!(ratio, otel.sample_ratio, MCP_OTEL_SAMPLE_RATIO),
    key!(
        number,
        otel.max_traces_per_second,
        MCP_OTEL_MAX_TRACES_PER_SECOND
    ),
    key!(text, otel.headers_file, MCP_OTEL_HEADERS_FILE),
    key!(text, otel.service_name, MCP_OTEL_SERVICE_NAME),
    // OTEL_RESOURCE_ATTRIBUTES' own format: key=value,key=value.
    key!(list, otel.resource_attributes, MCP_OTEL_RESOURCE_ATTRIBUTES),
    key!(choice, audit.output, MCP_AUDIT_OUTPUT),
    key!(text, audit.file, MCP_AUDIT_FILE),
    key!(number, audit.max_file_bytes, MCP_AUDIT_MAX_FILE_BYTES),
    key!(number, audit.max_files, MCP_AUDIT_MAX_FILES),
    key!(flag, audit.log_arguments, MCP_AUDIT_LOG_ARGUMENTS),
];

/// Keys whose values are tables or arrays of tables: set in the file only (no env
/// var), and not walked further when checking for unknown keys (serde checks inside).
pub const TABLE_KEYS: &[&str] = &[
    "backends",
    "auth.jwt.keys",
    "auth.oauth.clients",
    "auth.oauth.oidc.group_tiers",
    "access.tool_scopes",
    "access.default_tool_scopes",
    "access.groups",
    "rate_limit.tiers",
];

/// Keys whose presence means the operator is configuring a real deployment, so the
/// dev profile (generated certificate and key) must not kick in.
pub const DEPLOYMENT_KEYS: &[&str] = &[
    "tls.mode",
    "tls.cert_file",
    "tls.key_file",
    "acme.domains",
    "acme.cache_dir",
    "auth.mode",
    "auth.api_keys_file",
    "auth.jwt.issuer",
];

/// Never fails: a word outside the set is reported by validation, as from the file.
fn choice<T: DeserializeOwned>(slot: &mut Option<Choice<T>>, value: &str) -> Result<(), String> {
    *slot = Some(Choice::parse(value));
    Ok(())
}

fn text(slot: &mut Option<String>, value: &str) -> Result<(), String> {
    *slot = Some(value.trim().to_owned());
    Ok(())
}

/// Lists from a string: comma separated.
fn list(slot: &mut Option<Vec<String>>, value: &str) -> Result<(), String> {
    *slot = Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    );
    Ok(())
}

/// Scopes: space or comma separated.
fn words(slot: &mut Option<Vec<String>>, value: &str) -> Result<(), String> {
    *slot = Some(
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    );
    Ok(())
}

fn number<T: std::str::FromStr>(slot: &mut Option<T>, value: &str) -> Result<(), String> {
    let n = value
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got {value:?}"))?;
    *slot = Some(n);
    Ok(())
}

fn flag(slot: &mut Option<bool>, value: &str) -> Result<(), String> {
    *slot = Some(super::backends::boolean(value)?);
    Ok(())
}

fn ratio(slot: &mut Option<f64>, value: &str) -> Result<(), String> {
    let ratio = value
        .trim()
        .parse()
        .map_err(|_| format!("expected a number from 0.0 to 1.0, got {value:?}"))?;
    *slot = Some(ratio);
    Ok(())
}

impl RawConfig {
    /// Set one key from a string (an environment variable or a CLI flag).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match KEYS.iter().find(|spec| spec.key == key) {
            Some(spec) => (spec.set)(self, value),
            None => Err(format!("unknown key {key:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_can_be_set_from_a_string() {
        for spec in KEYS {
            let mut raw = RawConfig::default();
            let sample = match spec.key {
                "server.port" | "server.http_redirect_port" | "server.public_https_port" => "8443",
                k if k.ends_with("burst")
                    || k.ends_with("bytes")
                    || k.ends_with("max_total")
                    || k.ends_with("per_principal")
                    || k.ends_with("max_tracked_clients")
                    || k.ends_with("max_children")
                    || k.ends_with("max_pending_inputs")
                    || k.ends_with("pool_size")
                    || k.ends_with("max_token_bytes")
                    || k.ends_with("connections")
                    || k.ends_with("connections_per_ip")
                    || k.ends_with("replicas")
                    || k.ends_with("max_files")
                    || k.ends_with("per_second") =>
                {
                    "10"
                }
                k if k.ends_with("enabled")
                    || k.ends_with("log_arguments")
                    || k.ends_with("sign_in")
                    || k.ends_with("registration")
                    || k.ends_with("documents")
                    || k.ends_with("allow_private")
                    || k.ends_with("status_page") =>
                {
                    "true"
                }
                "otel.sample_ratio" => "0.5",
                _ => "x",
            };
            raw.set(spec.key, sample)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.key));
        }
    }

    #[test]
    fn choices_parse_alike_from_the_file_and_from_strings() {
        let from_file: RawConfig =
            toml::from_str("[auth]\nmode = \"api-keys+jwt\"\n[server]\ntransport = \"http\"\n")
                .unwrap();
        assert_eq!(
            from_file.auth.mode,
            Some(Choice::Known(AuthMode::ApiKeysAndJwt))
        );
        assert_eq!(
            from_file.server.transport,
            Some(Choice::Known(Transport::StreamableHttp))
        );
        let mut from_env = RawConfig::default();
        from_env.set("auth.mode", " api-keys+jwt ").unwrap();
        assert_eq!(from_env.auth.mode, from_file.auth.mode);
        from_env.set("tls.mode", "on").unwrap();
        let Some(Choice::Unknown(unknown)) = &from_env.tls.mode else {
            panic!("{:?}", from_env.tls.mode)
        };
        assert_eq!(
            unknown.to_string(),
            "must be \"files\", \"acme\", \"self-signed\" or \"off\", got \"on\""
        );
        // Not a string at all: a type error, as for any other key.
        assert!(toml::from_str::<RawConfig>("[tls]\nmode = 1\n").is_err());
    }

    #[test]
    fn env_names_are_unique() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.env).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
    }
}
