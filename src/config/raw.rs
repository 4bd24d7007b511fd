//! The configuration as written: every field optional, unknown keys rejected.
//! Environment variables and CLI flags are applied onto this before validation.

use serde::Deserialize;

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
    pub transport: Option<String>,
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
    pub mode: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub mode: Option<String>,
    pub api_keys_file: Option<String>,
    pub resource: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub required_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub jwt: RawJwt,
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
    pub store: Option<String>,
    pub redis_unavailable: Option<String>,
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
    pub format: Option<String>,
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
    pub mode: Option<String>,
    pub admin_listen: Option<String>,
}

/// One overridable key: its path in the TOML file and the environment variable for it.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    pub env: &'static str,
}

const fn key(key: &'static str, env: &'static str) -> KeySpec {
    KeySpec { key, env }
}

/// Every key the server knows, in file order. The example config and `.env.example`
/// are tested against this list, so adding a key here without documenting it fails CI.
pub const KEYS: &[KeySpec] = &[
    key("server.host", "MCP_HOST"),
    key("server.port", "MCP_PORT"),
    key("server.transport", "MCP_TRANSPORT"),
    key("server.public_hostnames", "MCP_PUBLIC_HOSTNAMES"),
    key("server.allowed_origins", "MCP_ALLOWED_ORIGINS"),
    key("server.handshake_timeout", "MCP_HANDSHAKE_TIMEOUT"),
    key("server.first_request_timeout", "MCP_FIRST_REQUEST_TIMEOUT"),
    key("server.shutdown_grace", "MCP_SHUTDOWN_GRACE"),
    key("server.max_body_bytes", "MCP_MAX_BODY_BYTES"),
    key("server.http_redirect_port", "MCP_HTTP_REDIRECT_PORT"),
    key("server.public_https_port", "MCP_PUBLIC_HTTPS_PORT"),
    key("server.hsts_max_age", "MCP_HSTS_MAX_AGE"),
    key("server.idle_timeout", "MCP_IDLE_TIMEOUT"),
    key("server.header_read_timeout", "MCP_HEADER_READ_TIMEOUT"),
    key("server.body_read_timeout", "MCP_BODY_READ_TIMEOUT"),
    key(
        "server.http2_keepalive_interval",
        "MCP_HTTP2_KEEPALIVE_INTERVAL",
    ),
    key(
        "server.http2_keepalive_timeout",
        "MCP_HTTP2_KEEPALIVE_TIMEOUT",
    ),
    key("server.max_connections", "MCP_MAX_CONNECTIONS"),
    key(
        "server.max_connections_per_ip",
        "MCP_MAX_CONNECTIONS_PER_IP",
    ),
    key("server.proxy_protocol_from", "MCP_PROXY_PROTOCOL_FROM"),
    key("server.trusted_forwarders", "MCP_TRUSTED_FORWARDERS"),
    key("tls.mode", "MCP_TLS_MODE"),
    key("tls.cert_file", "MCP_TLS_CERT_FILE"),
    key("tls.key_file", "MCP_TLS_KEY_FILE"),
    key("acme.domains", "MCP_ACME_DOMAINS"),
    key("acme.contact", "MCP_ACME_CONTACT"),
    key("acme.directory", "MCP_ACME_DIRECTORY"),
    key("acme.ca_bundle", "MCP_ACME_CA_BUNDLE"),
    key("acme.cache_dir", "MCP_ACME_CACHE_DIR"),
    key("auth.mode", "MCP_AUTH_MODE"),
    key("auth.api_keys_file", "MCP_API_KEYS_FILE"),
    key("auth.resource", "MCP_RESOURCE_URI"),
    key("auth.authorization_servers", "MCP_AUTHORIZATION_SERVERS"),
    key("auth.required_scopes", "MCP_REQUIRED_SCOPES"),
    key("auth.jwt.issuer", "MCP_JWT_ISSUER"),
    key("auth.jwt.audience", "MCP_JWT_AUDIENCE"),
    key("auth.jwt.key_file", "MCP_JWT_KEY_FILE"),
    key("auth.jwt.algorithms", "MCP_JWT_ALGORITHMS"),
    key("auth.jwt.jwks_file", "MCP_JWT_JWKS_FILE"),
    key("auth.jwt.jwks_url", "MCP_JWT_JWKS_URL"),
    key("auth.jwt.jwks_ca_file", "MCP_JWT_JWKS_CA_FILE"),
    key("auth.jwt.jwks_refresh", "MCP_JWT_JWKS_REFRESH"),
    key("auth.jwt.leeway", "MCP_JWT_LEEWAY"),
    key("auth.jwt.principal_claim", "MCP_JWT_PRINCIPAL_CLAIM"),
    key("auth.jwt.principal_prefix", "MCP_JWT_PRINCIPAL_PREFIX"),
    key("auth.jwt.required_claims", "MCP_JWT_REQUIRED_CLAIMS"),
    key("auth.jwt.tier_claim", "MCP_JWT_TIER_CLAIM"),
    key("auth.jwt.max_token_bytes", "MCP_JWT_MAX_TOKEN_BYTES"),
    key("rate_limit.rate", "MCP_RATE_LIMIT"),
    key("rate_limit.burst", "MCP_RATE_BURST"),
    key("rate_limit.failed_auth_rate", "MCP_FAILED_AUTH_RATE"),
    key("rate_limit.failed_auth_burst", "MCP_FAILED_AUTH_BURST"),
    key("rate_limit.max_tracked_clients", "MCP_RATE_MAX_TRACKED"),
    key("rate_limit.protocol_rate", "MCP_PROTOCOL_RATE"),
    key("rate_limit.protocol_burst", "MCP_PROTOCOL_BURST"),
    key("rate_limit.store", "MCP_RATE_LIMIT_STORE"),
    key("rate_limit.redis_unavailable", "MCP_REDIS_UNAVAILABLE"),
    key("rate_limit.replicas", "MCP_REPLICAS"),
    key("redis.url", "MCP_REDIS_URL"),
    key("redis.password_file", "MCP_REDIS_PASSWORD_FILE"),
    key("redis.ca_file", "MCP_REDIS_CA_FILE"),
    key("redis.timeout", "MCP_REDIS_TIMEOUT"),
    key("sessions.max_total", "MCP_MAX_SESSIONS"),
    key(
        "sessions.max_per_principal",
        "MCP_MAX_SESSIONS_PER_PRINCIPAL",
    ),
    key("sessions.idle_timeout", "MCP_SESSION_IDLE_TIMEOUT"),
    key("sessions.id_ttl", "MCP_SESSION_ID_TTL"),
    key("docs.dir", "MCP_DOCS_DIR"),
    key("secrets.poll_interval", "MCP_SECRETS_POLL_INTERVAL"),
    key("log.format", "MCP_LOG_FORMAT"),
    key("log.level", "MCP_LOG_LEVEL"),
    key("metrics.mode", "MCP_METRICS_MODE"),
    key("metrics.admin_listen", "MCP_METRICS_LISTEN"),
    key("proxy.call_timeout", "MCP_CALL_TIMEOUT"),
    key("proxy.spawn_timeout", "MCP_SPAWN_TIMEOUT"),
    key("proxy.max_children", "MCP_MAX_CHILDREN"),
    key("proxy.pool_size", "MCP_POOL_SIZE"),
    key("proxy.pool_idle_timeout", "MCP_POOL_IDLE_TIMEOUT"),
    key("proxy.kill_grace", "MCP_KILL_GRACE"),
    key("proxy.restart_backoff_max", "MCP_RESTART_BACKOFF_MAX"),
    key("legacy_sse.enabled", "MCP_LEGACY_SSE"),
    key("cluster.peer_listen", "MCP_PEER_LISTEN"),
    key("cluster.advertise", "MCP_PEER_ADVERTISE"),
    key("cluster.key_ring_file", "MCP_SESSION_KEYS_FILE"),
    key("otel.endpoint", "MCP_OTEL_ENDPOINT"),
    key("otel.protocol", "MCP_OTEL_PROTOCOL"),
    key("otel.sample_ratio", "MCP_OTEL_SAMPLE_RATIO"),
    key("otel.headers_file", "MCP_OTEL_HEADERS_FILE"),
    key("otel.service_name", "MCP_OTEL_SERVICE_NAME"),
    key("otel.resource_attributes", "MCP_OTEL_RESOURCE_ATTRIBUTES"),
    key("audit.output", "MCP_AUDIT_OUTPUT"),
    key("audit.file", "MCP_AUDIT_FILE"),
    key("audit.max_file_bytes", "MCP_AUDIT_MAX_FILE_BYTES"),
    key("audit.max_files", "MCP_AUDIT_MAX_FILES"),
    key("audit.log_arguments", "MCP_AUDIT_LOG_ARGUMENTS"),
];

/// Keys whose values are tables or arrays of tables: set in the file only (no env
/// var), and not walked further when checking for unknown keys (serde checks inside).
pub const TABLE_KEYS: &[&str] = &[
    "backends",
    "auth.jwt.keys",
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

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Scopes: space or comma separated.
fn words(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got {value:?}"))
}

impl RawConfig {
    /// Set one key from a string (an environment variable or a CLI flag).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let text = || Some(value.trim().to_owned());
        match key {
            "server.host" => self.server.host = text(),
            "server.port" => self.server.port = Some(number(value)?),
            "server.transport" => self.server.transport = text(),
            "server.public_hostnames" => self.server.public_hostnames = Some(list(value)),
            "server.allowed_origins" => self.server.allowed_origins = Some(list(value)),
            "server.handshake_timeout" => self.server.handshake_timeout = text(),
            "server.first_request_timeout" => self.server.first_request_timeout = text(),
            "server.shutdown_grace" => self.server.shutdown_grace = text(),
            "server.max_body_bytes" => self.server.max_body_bytes = Some(number(value)?),
            "server.http_redirect_port" => self.server.http_redirect_port = Some(number(value)?),
            "server.public_https_port" => self.server.public_https_port = Some(number(value)?),
            "server.hsts_max_age" => self.server.hsts_max_age = text(),
            "server.idle_timeout" => self.server.idle_timeout = text(),
            "server.header_read_timeout" => self.server.header_read_timeout = text(),
            "server.body_read_timeout" => self.server.body_read_timeout = text(),
            "server.http2_keepalive_interval" => self.server.http2_keepalive_interval = text(),
            "server.http2_keepalive_timeout" => self.server.http2_keepalive_timeout = text(),
            "server.max_connections" => self.server.max_connections = Some(number(value)?),
            "server.max_connections_per_ip" => {
                self.server.max_connections_per_ip = Some(number(value)?)
            }
            "server.proxy_protocol_from" => self.server.proxy_protocol_from = Some(list(value)),
            "server.trusted_forwarders" => self.server.trusted_forwarders = Some(list(value)),
            "tls.mode" => self.tls.mode = text(),
            "tls.cert_file" => self.tls.cert_file = text(),
            "tls.key_file" => self.tls.key_file = text(),
            "acme.domains" => self.acme.domains = Some(list(value)),
            "acme.contact" => self.acme.contact = Some(list(value)),
            "acme.directory" => self.acme.directory = text(),
            "acme.ca_bundle" => self.acme.ca_bundle = text(),
            "acme.cache_dir" => self.acme.cache_dir = text(),
            "auth.mode" => self.auth.mode = text(),
            "auth.api_keys_file" => self.auth.api_keys_file = text(),
            "auth.resource" => self.auth.resource = text(),
            "auth.authorization_servers" => self.auth.authorization_servers = Some(list(value)),
            "auth.required_scopes" => self.auth.required_scopes = Some(words(value)),
            "auth.jwt.issuer" => self.auth.jwt.issuer = text(),
            "auth.jwt.audience" => self.auth.jwt.audience = Some(list(value)),
            "auth.jwt.key_file" => self.auth.jwt.key_file = text(),
            "auth.jwt.algorithms" => self.auth.jwt.algorithms = Some(list(value)),
            "auth.jwt.jwks_file" => self.auth.jwt.jwks_file = text(),
            "auth.jwt.jwks_url" => self.auth.jwt.jwks_url = text(),
            "auth.jwt.jwks_ca_file" => self.auth.jwt.jwks_ca_file = text(),
            "auth.jwt.jwks_refresh" => self.auth.jwt.jwks_refresh = text(),
            "auth.jwt.leeway" => self.auth.jwt.leeway = text(),
            "auth.jwt.principal_claim" => self.auth.jwt.principal_claim = text(),
            "auth.jwt.principal_prefix" => self.auth.jwt.principal_prefix = text(),
            "auth.jwt.required_claims" => self.auth.jwt.required_claims = Some(list(value)),
            "auth.jwt.tier_claim" => self.auth.jwt.tier_claim = text(),
            "auth.jwt.max_token_bytes" => self.auth.jwt.max_token_bytes = Some(number(value)?),
            "rate_limit.rate" => self.rate_limit.rate = text(),
            "rate_limit.burst" => self.rate_limit.burst = Some(number(value)?),
            "rate_limit.failed_auth_rate" => self.rate_limit.failed_auth_rate = text(),
            "rate_limit.failed_auth_burst" => {
                self.rate_limit.failed_auth_burst = Some(number(value)?)
            }
            "rate_limit.max_tracked_clients" => {
                self.rate_limit.max_tracked_clients = Some(number(value)?)
            }
            "rate_limit.protocol_rate" => self.rate_limit.protocol_rate = text(),
            "rate_limit.protocol_burst" => self.rate_limit.protocol_burst = Some(number(value)?),
            "rate_limit.store" => self.rate_limit.store = text(),
            "rate_limit.redis_unavailable" => self.rate_limit.redis_unavailable = text(),
            "rate_limit.replicas" => self.rate_limit.replicas = Some(number(value)?),
            "redis.url" => self.redis.url = text(),
            "redis.password_file" => self.redis.password_file = text(),
            "redis.ca_file" => self.redis.ca_file = text(),
            "redis.timeout" => self.redis.timeout = text(),
            "sessions.max_total" => self.sessions.max_total = Some(number(value)?),
            "sessions.max_per_principal" => self.sessions.max_per_principal = Some(number(value)?),
            "sessions.idle_timeout" => self.sessions.idle_timeout = text(),
            "sessions.id_ttl" => self.sessions.id_ttl = text(),
            "cluster.peer_listen" => self.cluster.peer_listen = text(),
            "cluster.advertise" => self.cluster.advertise = text(),
            "cluster.key_ring_file" => self.cluster.key_ring_file = text(),
            "docs.dir" => self.docs.dir = text(),
            "secrets.poll_interval" => self.secrets.poll_interval = text(),
            "log.format" => self.log.format = text(),
            "log.level" => self.log.level = text(),
            "proxy.call_timeout" => self.proxy.call_timeout = text(),
            "proxy.spawn_timeout" => self.proxy.spawn_timeout = text(),
            "proxy.max_children" => self.proxy.max_children = Some(number(value)?),
            "proxy.pool_size" => self.proxy.pool_size = Some(number(value)?),
            "proxy.pool_idle_timeout" => self.proxy.pool_idle_timeout = text(),
            "proxy.kill_grace" => self.proxy.kill_grace = text(),
            "proxy.restart_backoff_max" => self.proxy.restart_backoff_max = text(),
            "legacy_sse.enabled" => {
                self.legacy_sse.enabled = Some(super::backends::boolean(value)?)
            }
            "metrics.mode" => self.metrics.mode = text(),
            "metrics.admin_listen" => self.metrics.admin_listen = text(),
            "otel.endpoint" => self.otel.endpoint = text(),
            "otel.protocol" => self.otel.protocol = text(),
            "otel.sample_ratio" => {
                self.otel.sample_ratio = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("expected a number from 0.0 to 1.0, got {value:?}"))?,
                )
            }
            "otel.headers_file" => self.otel.headers_file = text(),
            "otel.service_name" => self.otel.service_name = text(),
            // OTEL_RESOURCE_ATTRIBUTES' own format: key=value,key=value.
            "otel.resource_attributes" => self.otel.resource_attributes = Some(list(value)),
            "audit.output" => self.audit.output = text(),
            "audit.file" => self.audit.file = text(),
            "audit.max_file_bytes" => self.audit.max_file_bytes = Some(number(value)?),
            "audit.max_files" => self.audit.max_files = Some(number(value)?),
            "audit.log_arguments" => {
                self.audit.log_arguments = Some(super::backends::boolean(value)?)
            }
            other => return Err(format!("unknown key {other:?}")),
        }
        Ok(())
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
                    || k.ends_with("pool_size")
                    || k.ends_with("max_token_bytes")
                    || k.ends_with("connections")
                    || k.ends_with("connections_per_ip")
                    || k.ends_with("replicas")
                    || k.ends_with("max_files") =>
                {
                    "10"
                }
                k if k.ends_with("enabled") || k.ends_with("log_arguments") => "true",
                "otel.sample_ratio" => "0.5",
                _ => "x",
            };
            raw.set(spec.key, sample)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.key));
        }
    }

    #[test]
    fn env_names_are_unique() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.env).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
    }
}
