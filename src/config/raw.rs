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

impl<T: DeserializeOwned> Choice<T> {
    /// Every word the set accepts (its variants and their aliases), as serde lists them.
    pub fn words() -> &'static [&'static str] {
        match Choice::<T>::parse("\0") {
            Choice::Unknown(unknown) => unknown.allowed,
            Choice::Known(_) => &[],
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

/// What a value looks like, as the user writes it (the reference's "type" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `"30s"`, `"5m"`, `"24h"` (humantime).
    Duration,
    Integer,
    Port,
    Bool,
    /// A number from 0.0 to 1.0.
    Ratio,
    Text,
    Path,
    Url,
    /// `host:port` or an IP address.
    Address,
    /// `"<n>/s"`, `"<n>/min"`, `"<n>/hour"`.
    Rate,
    /// A TOML array; from the environment, comma separated.
    List,
    /// A TOML array; from the environment, space or comma separated.
    Words,
    /// One word of a fixed set ([`KeySpec::words`]).
    Choice,
    /// A TOML table (file only).
    Table,
    /// An array of TOML tables (file only).
    Tables,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Duration => "duration",
            ValueType::Integer => "integer",
            ValueType::Port => "port",
            ValueType::Bool => "bool",
            ValueType::Ratio => "number 0.0-1.0",
            ValueType::Text => "string",
            ValueType::Path => "path",
            ValueType::Url => "URL",
            ValueType::Address => "address",
            ValueType::Rate => "rate",
            ValueType::List => "list",
            ValueType::Words => "list of words",
            ValueType::Choice => "choice",
            ValueType::Table => "table",
            ValueType::Tables => "array of tables",
        }
    }

    /// A value in one canonical form, so a default and a value written another way
    /// (`"60s"` and `"1m"`, `1` and `1.0`, `a, b` and `a,b`) compare equal.
    pub fn canonical(self, text: &str) -> String {
        let text = text.trim();
        match self {
            ValueType::Duration => match humantime::parse_duration(text) {
                Ok(d) => format!("{}ns", d.as_nanos()),
                Err(_) => text.to_owned(),
            },
            ValueType::Ratio => match text.parse::<f64>() {
                Ok(n) => n.to_string(),
                Err(_) => text.to_owned(),
            },
            ValueType::Bool => text.to_ascii_lowercase(),
            ValueType::List => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(","),
            ValueType::Words => text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(","),
            _ => text.to_owned(),
        }
    }
}

/// A key's value when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Unset: the feature it configures is off, or the value is required where used.
    None,
    /// A fixed value, written as in an environment variable (a list comma separated,
    /// `""` for an empty one). Tested against what validation fills in.
    Literal(&'static str),
    /// Computed from other keys or the profile; the text says how.
    Derived(&'static str),
}

/// Whether a running server picks up a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Read once at start: a change needs a restart.
    Restart,
    /// What is picked up without a restart, and when (the key's value itself, the
    /// path or URL, still needs a restart).
    Live(&'static str),
}

/// The reload of the secret files the `reload` module watches (`Trigger::Files`).
const FILE_RELOAD: Reload = Reload::Live("file contents, on change and on SIGHUP");

/// One key: its path in the TOML file, the environment variable for it, how a string
/// value is stored, and what the reference says about it. Made by [`key!`] and the
/// `const fn`s below, so a new key is one entry of [`KEYS`].
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    pub env: &'static str,
    pub set: Setter,
    pub ty: ValueType,
    /// The words a [`ValueType::Choice`] key accepts (serde's own list, so it cannot
    /// drift from the enum); empty for other types.
    pub words: fn() -> &'static [&'static str],
    pub default: DefaultValue,
    pub reload: Reload,
    /// The command-line flag that sets it, if any (`src/bin/mcp-edge/cli.rs`).
    pub flag: Option<&'static str>,
    /// One line of meaning.
    pub meaning: &'static str,
}

impl KeySpec {
    const fn default_is(mut self, value: &'static str) -> Self {
        self.default = DefaultValue::Literal(value);
        self
    }

    const fn derived(mut self, how: &'static str) -> Self {
        self.default = DefaultValue::Derived(how);
        self
    }

    const fn reloads(mut self, reload: Reload) -> Self {
        self.reload = reload;
        self
    }

    const fn flag(mut self, flag: &'static str) -> Self {
        self.flag = Some(flag);
        self
    }

    /// The section: the key's path without its last segment (`auth.jwt`).
    pub fn section(&self) -> &'static str {
        self.key.rsplit_once('.').map_or("", |(section, _)| section)
    }

    /// The key's last segment, as written under its `[section]` header.
    pub fn name(&self) -> &'static str {
        self.key.rsplit_once('.').map_or(self.key, |(_, name)| name)
    }

    /// `Some(true)` when `text` (written as in an environment variable) is the key's
    /// literal default; `None` when it has no literal default to compare with.
    pub fn is_default(&self, text: &str) -> Option<bool> {
        match self.default {
            DefaultValue::Literal(default) => {
                Some(self.ty.canonical(default) == self.ty.canonical(text))
            }
            _ => None,
        }
    }
}

/// The words a [`Choice`] field accepts; nothing for other field types. Lets [`key!`]
/// fill [`KeySpec::words`] for every key alike.
trait ChoiceWords {
    fn words(&self) -> &'static [&'static str] {
        &[]
    }
}

impl<T: DeserializeOwned> ChoiceWords for Option<Choice<T>> {
    fn words(&self) -> &'static [&'static str] {
        Choice::<T>::words()
    }
}

impl ChoiceWords for Option<String> {}
impl ChoiceWords for Option<Vec<String>> {}
impl ChoiceWords for Option<bool> {}
impl ChoiceWords for Option<u16> {}
impl ChoiceWords for Option<u32> {}
impl ChoiceWords for Option<u64> {}
impl ChoiceWords for Option<f64> {}

/// The setter storing a string into a field of the given type.
macro_rules! setter {
    (choice) => {
        choice
    };
    (integer) => {
        number
    };
    (port) => {
        number
    };
    (bool) => {
        flag
    };
    (ratio) => {
        ratio
    };
    (list) => {
        list
    };
    (words) => {
        words
    };
    ($text:ident) => {
        text
    };
}

macro_rules! value_type {
    (duration) => {
        ValueType::Duration
    };
    (integer) => {
        ValueType::Integer
    };
    (port) => {
        ValueType::Port
    };
    (bool) => {
        ValueType::Bool
    };
    (ratio) => {
        ValueType::Ratio
    };
    (text) => {
        ValueType::Text
    };
    (path) => {
        ValueType::Path
    };
    (url) => {
        ValueType::Url
    };
    (address) => {
        ValueType::Address
    };
    (rate) => {
        ValueType::Rate
    };
    (list) => {
        ValueType::List
    };
    (words) => {
        ValueType::Words
    };
    (choice) => {
        ValueType::Choice
    };
}

/// `key!(type, section.field, ENV_VAR, "meaning")`: the file key is the field's
/// path, so the two cannot drift apart; the type picks the setter that stores a string
/// into that field. No default, restart to change, no flag, until said otherwise.
macro_rules! key {
    ($ty:ident, $first:ident $(. $rest:ident)*, $env:ident, $meaning:literal) => {
        KeySpec {
            key: concat!(stringify!($first) $(, ".", stringify!($rest))*),
            env: stringify!($env),
            set: |raw, value| setter!($ty)(&mut raw.$first $(.$rest)*, value),
            ty: value_type!($ty),
            words: || ChoiceWords::words(&RawConfig::default().$first $(.$rest)*),
            default: DefaultValue::None,
            reload: Reload::Restart,
            flag: None,
            meaning: $meaning,
        }
    };
}

/// Every key the server knows, in file order, with what `mcp-edge config reference`
/// says about it. The example config, `.env.example` and the committed reference are
/// tested against this list, and each literal default against validation.
pub const KEYS: &[KeySpec] = &[
    // [server]
    key!(address, server.host, MCP_HOST, "IP address to bind.")
        .derived("\"0.0.0.0\"; \"127.0.0.1\" in the dev profile")
        .flag("--host"),
    key!(port, server.port, MCP_PORT, "TCP port of the HTTPS listener.")
        .default_is("8443")
        .flag("--port"),
    key!(choice, server.transport, MCP_TRANSPORT,
        "\"streamable-http\" (HTTPS at /mcp) or \"stdio\" (stdin/stdout: no TLS, no auth); \"http\" is short for the first.")
        .default_is("streamable-http")
        .flag("--transport"),
    key!(list, server.public_hostnames, MCP_PUBLIC_HOSTNAMES,
        "Names clients reach this server by: the Host values /mcp accepts (besides loopback names) and the names of the dev certificate.")
        .default_is("localhost"),
    key!(list, server.allowed_origins, MCP_ALLOWED_ORIGINS,
        "Extra browser origins allowed to call /mcp (https:// on a public or loopback name is always allowed).")
        .default_is(""),
    key!(duration, server.handshake_timeout, MCP_HANDSHAKE_TIMEOUT,
        "A TLS handshake must finish within this.")
        .default_is("10s"),
    key!(duration, server.first_request_timeout, MCP_FIRST_REQUEST_TIMEOUT,
        "A new connection must send its first request within this.")
        .default_is("15s"),
    key!(duration, server.shutdown_grace, MCP_SHUTDOWN_GRACE,
        "On SIGTERM/SIGINT, how long in-flight calls may run before streams are closed.")
        .default_is("30s"),
    key!(integer, server.max_body_bytes, MCP_MAX_BODY_BYTES,
        "Largest accepted request body; a larger one gets 413.")
        .default_is("4194304"),
    key!(port, server.http_redirect_port, MCP_HTTP_REDIRECT_PORT,
        "Port of a plain-HTTP listener that only redirects to HTTPS (308); 0 = none.")
        .default_is("0"),
    key!(port, server.public_https_port, MCP_PUBLIC_HTTPS_PORT,
        "The HTTPS port clients use, written into those redirects (443 is left out of the URL).")
        .default_is("443"),
    key!(duration, server.hsts_max_age, MCP_HSTS_MAX_AGE,
        "Strict-Transport-Security max-age on HTTPS responses; \"0s\" = no header.")
        .default_is("0s"),
    key!(duration, server.idle_timeout, MCP_IDLE_TIMEOUT,
        "A kept-alive connection with nothing in flight is closed after this (open SSE streams are not idle).")
        .default_is("60s"),
    key!(duration, server.header_read_timeout, MCP_HEADER_READ_TIMEOUT,
        "An HTTP/1 request's headers must be complete within this from their first byte.")
        .default_is("10s"),
    key!(duration, server.body_read_timeout, MCP_BODY_READ_TIMEOUT,
        "A request body must be complete within this from its headers, else 408.")
        .default_is("60s"),
    key!(duration, server.http2_keepalive_interval, MCP_HTTP2_KEEPALIVE_INTERVAL,
        "HTTP/2: ping the client this often.")
        .default_is("30s"),
    key!(duration, server.http2_keepalive_timeout, MCP_HTTP2_KEEPALIVE_TIMEOUT,
        "HTTP/2: close the connection when a ping is not answered within this.")
        .default_is("10s"),
    key!(integer, server.max_connections, MCP_MAX_CONNECTIONS,
        "Open connections at most (TLS handshakes included); more are closed at accept.")
        .default_is("4096"),
    key!(integer, server.max_connections_per_ip, MCP_MAX_CONNECTIONS_PER_IP,
        "Open connections per client address (trusted forwarders count only towards max_connections).")
        .default_is("256"),
    key!(list, server.proxy_protocol_from, MCP_PROXY_PROTOCOL_FROM,
        "Balancers (addresses or CIDR ranges) that must start every connection with a PROXY protocol v1/v2 header.")
        .default_is(""),
    key!(list, server.trusted_forwarders, MCP_TRUSTED_FORWARDERS,
        "HTTP proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed.")
        .default_is(""),
    // [tls]
    key!(choice, tls.mode, MCP_TLS_MODE,
        "Where the certificate comes from: PEM files, ACME, an in-memory self-signed one, or \"off\" (plain HTTP, loopback only).")
        .derived("\"files\"; \"self-signed\" in the dev profile"),
    key!(path, tls.cert_file, MCP_TLS_CERT_FILE,
        "PEM certificate chain, leaf first (tls.mode = \"files\").")
        .reloads(FILE_RELOAD),
    key!(path, tls.key_file, MCP_TLS_KEY_FILE,
        "PEM private key: PKCS#8, PKCS#1 or SEC1 (tls.mode = \"files\").")
        .reloads(FILE_RELOAD),
    // [acme]
    key!(list, acme.domains, MCP_ACME_DOMAINS,
        "Names on the ACME certificate (tls.mode = \"acme\").")
        .derived("server.public_hostnames"),
    key!(list, acme.contact, MCP_ACME_CONTACT,
        "ACME account contacts (e-mail addresses; \"mailto:\" is added)."),
    key!(text, acme.directory, MCP_ACME_DIRECTORY,
        "\"letsencrypt-staging\", \"letsencrypt-production\" or an ACME directory URL.")
        .default_is("letsencrypt-staging"),
    key!(path, acme.ca_bundle, MCP_ACME_CA_BUNDLE,
        "PEM CA certificates trusted for the directory's HTTPS instead of the built-in roots (a private ACME server)."),
    key!(path, acme.cache_dir, MCP_ACME_CACHE_DIR,
        "Directory of the ACME account key and certificates (a persistent volume).")
        .default_is("/var/lib/mcp-edge/acme"),
    // [auth]
    key!(choice, auth.mode, MCP_AUTH_MODE,
        "How callers authenticate: API keys, JWTs, both (JWT-shaped tokens as JWTs), or \"none\" (loopback only).")
        .derived("\"api-keys\"; with auth.jwt.issuer set, \"api-keys+jwt\", or \"jwt\" when auth.api_keys_file is not set"),
    key!(path, auth.api_keys_file, MCP_API_KEYS_FILE,
        "API keys, one `<principal> <key|sha256:hex> [options]` per line; sessions of removed keys are closed on reload.")
        .derived("required; in the dev profile, one key generated at start")
        .reloads(FILE_RELOAD),
    key!(url, auth.resource, MCP_RESOURCE_URI,
        "This server's canonical resource URI (RFC 8707): the default JWT audience and the metadata's `resource`.")
        .derived("https://<first public hostname>[:<port> unless 443]/mcp"),
    key!(list, auth.authorization_servers, MCP_AUTHORIZATION_SERVERS,
        "Authorization servers listed in the protected-resource metadata.")
        .derived("auth.jwt.issuer when JWTs are accepted; with auth.oauth.enabled the edge itself comes first"),
    key!(words, auth.required_scopes, MCP_REQUIRED_SCOPES,
        "Scopes every JWT needs to use /mcp at all (else 403 insufficient_scope).")
        .default_is(""),
    // [auth.jwt]
    key!(text, auth.jwt.issuer, MCP_JWT_ISSUER,
        "Expected `iss`; setting it turns JWTs on."),
    key!(list, auth.jwt.audience, MCP_JWT_AUDIENCE, "Accepted `aud` values.")
        .derived("the resource URIs of this server (auth.resource)"),
    key!(path, auth.jwt.key_file, MCP_JWT_KEY_FILE,
        "One verification key: an HMAC secret or a PEM public key.")
        .reloads(FILE_RELOAD),
    key!(list, auth.jwt.algorithms, MCP_JWT_ALGORITHMS,
        "The algorithms auth.jwt.key_file may verify, all of one family (\"none\" is never accepted)."),
    key!(path, auth.jwt.jwks_file, MCP_JWT_JWKS_FILE,
        "A JWKS document on disk (asymmetric keys only).")
        .reloads(FILE_RELOAD),
    key!(url, auth.jwt.jwks_url, MCP_JWT_JWKS_URL,
        "The IdP's JWKS URL: fetched at start, refreshed every auth.jwt.jwks_refresh.")
        .reloads(Reload::Live("the key set, every jwks_refresh and on an unknown kid (at most every 30s)")),
    key!(path, auth.jwt.jwks_ca_file, MCP_JWT_JWKS_CA_FILE,
        "CA bundle for the TLS certificate of a private IdP's JWKS URL."),
    key!(duration, auth.jwt.jwks_refresh, MCP_JWT_JWKS_REFRESH,
        "How often the JWKS URL is fetched again.")
        .default_is("10m"),
    key!(duration, auth.jwt.leeway, MCP_JWT_LEEWAY, "Clock skew allowed for `exp` and `nbf`.")
        .default_is("60s"),
    key!(text, auth.jwt.principal_claim, MCP_JWT_PRINCIPAL_CLAIM, "The claim naming the principal.")
        .default_is("sub"),
    key!(text, auth.jwt.principal_prefix, MCP_JWT_PRINCIPAL_PREFIX,
        "Put before every JWT principal, so a JWT subject is never the API-key principal of the same name (\"\" merges them).")
        .default_is("jwt:"),
    key!(list, auth.jwt.required_claims, MCP_JWT_REQUIRED_CLAIMS,
        "Claims a token must carry besides exp, iss and aud.")
        .default_is(""),
    key!(text, auth.jwt.tier_claim, MCP_JWT_TIER_CLAIM,
        "A claim naming the caller's [rate_limit.tiers] entry."),
    key!(integer, auth.jwt.max_token_bytes, MCP_JWT_MAX_TOKEN_BYTES,
        "Larger tokens are refused before parsing (256 to 65536).")
        .default_is("8192"),
    // [auth.oauth]
    key!(bool, auth.oauth.enabled, MCP_OAUTH,
        "The edge as the OAuth 2.1 authorization server of its own /mcp (sign-in with the team API key or the IdP).")
        .default_is("false"),
    key!(path, auth.oauth.signing_key_file, MCP_OAUTH_SIGNING_KEY_FILE,
        "PKCS#8 P-256 private keys (PEM) signing access tokens: the first signs, all verify.")
        .derived("a random key per process (tokens end at restart)")
        .reloads(FILE_RELOAD),
    key!(duration, auth.oauth.access_token_ttl, MCP_OAUTH_ACCESS_TOKEN_TTL,
        "Access-token lifetime: how long a person whose key was removed keeps access at most (10s to 24h).")
        .default_is("15m"),
    key!(duration, auth.oauth.refresh_token_ttl, MCP_OAUTH_REFRESH_TOKEN_TTL,
        "How long one sign-in lasts (refresh tokens rotate at each use).")
        .default_is("30d"),
    key!(bool, auth.oauth.api_key_sign_in, MCP_OAUTH_API_KEY_SIGN_IN,
        "Sign in by pasting the team API key.")
        .derived("true when API keys are accepted"),
    key!(bool, auth.oauth.registration, MCP_OAUTH_REGISTRATION,
        "Dynamic client registration (RFC 7591), public clients only.")
        .default_is("true"),
    key!(rate, auth.oauth.registration_rate, MCP_OAUTH_REGISTRATION_RATE,
        "Registrations allowed per client address.")
        .default_is("20/min"),
    key!(bool, auth.oauth.client_metadata_documents, MCP_OAUTH_CLIENT_METADATA_DOCUMENTS,
        "Accept client ids that are https URLs of client ID metadata documents, fetched.")
        .default_is("true"),
    key!(bool, auth.oauth.metadata_allow_private, MCP_OAUTH_METADATA_ALLOW_PRIVATE,
        "Fetch such documents from loopback and private addresses too (labs, tests).")
        .default_is("false"),
    key!(path, auth.oauth.metadata_ca_file, MCP_OAUTH_METADATA_CA_FILE,
        "Extra CA (PEM) trusted for client metadata documents (read at start)."),
    key!(list, auth.oauth.key_only_hosts, MCP_OAUTH_KEY_ONLY_HOSTS,
        "Host names on which nothing of OAuth is published, for clients that drop their key once discovery answers.")
        .default_is(""),
    // [auth.oauth.oidc]
    key!(url, auth.oauth.oidc.issuer, MCP_OAUTH_OIDC_ISSUER,
        "The team's OpenID provider; setting it offers sign-in there."),
    key!(text, auth.oauth.oidc.client_id, MCP_OAUTH_OIDC_CLIENT_ID,
        "The edge's client id at the IdP (required with the issuer)."),
    key!(path, auth.oauth.oidc.client_secret_file, MCP_OAUTH_OIDC_CLIENT_SECRET_FILE,
        "The client secret, one line (required with the issuer).")
        .reloads(Reload::Live("file contents, read at each sign-in")),
    key!(text, auth.oauth.oidc.name, MCP_OAUTH_OIDC_NAME,
        "The sign-in button says \"Sign in with <name>\".")
        .default_is("your identity provider"),
    key!(words, auth.oauth.oidc.scopes, MCP_OAUTH_OIDC_SCOPES,
        "Scopes asked for (offline_access is added when the IdP offers it).")
        .default_is("openid,email,profile"),
    key!(text, auth.oauth.oidc.principal_claim, MCP_OAUTH_OIDC_PRINCIPAL_CLAIM,
        "The ID-token claim naming the principal: email, preferred_username or sub.")
        .default_is("email"),
    key!(list, auth.oauth.oidc.allowed_domains, MCP_OAUTH_OIDC_ALLOWED_DOMAINS,
        "Admit only verified e-mail addresses of these domains (empty: any).")
        .default_is(""),
    key!(text, auth.oauth.oidc.groups_claim, MCP_OAUTH_OIDC_GROUPS_CLAIM,
        "The claim listing the person's groups.")
        .default_is("groups"),
    key!(list, auth.oauth.oidc.allowed_groups, MCP_OAUTH_OIDC_ALLOWED_GROUPS,
        "Admit only members of one of these groups (empty: any).")
        .default_is(""),
    key!(path, auth.oauth.oidc.ca_file, MCP_OAUTH_OIDC_CA_FILE,
        "Extra CA (PEM) trusted for the IdP."),
    // [rate_limit]
    key!(rate, rate_limit.rate, MCP_RATE_LIMIT, "Default call budget per principal (GCRA).")
        .default_is("120/min"),
    key!(integer, rate_limit.burst, MCP_RATE_BURST,
        "Calls a principal may send at once before the rate applies.")
        .default_is("30"),
    key!(rate, rate_limit.failed_auth_rate, MCP_FAILED_AUTH_RATE,
        "Failed authentications allowed per client IP; past it the IP gets 429 before any key is checked.")
        .default_is("20/min"),
    key!(integer, rate_limit.failed_auth_burst, MCP_FAILED_AUTH_BURST,
        "Burst of failed authentications per client IP.")
        .default_is("10"),
    key!(integer, rate_limit.max_tracked_clients, MCP_RATE_MAX_TRACKED,
        "Cap on tracked client IPs; idle ones are evicted first.")
        .default_is("100000"),
    key!(rate, rate_limit.protocol_rate, MCP_PROTOCOL_RATE,
        "Per-principal bound on session set-up and notifications (initialize, ping, GET streams, DELETE).")
        .default_is("1200/min"),
    key!(integer, rate_limit.protocol_burst, MCP_PROTOCOL_BURST, "Burst of that protocol bound.")
        .default_is("300"),
    key!(choice, rate_limit.store, MCP_RATE_LIMIT_STORE,
        "\"local\" (this process) or \"redis\" (shared by all replicas; needs redis.url).")
        .default_is("local"),
    key!(choice, rate_limit.redis_unavailable, MCP_REDIS_UNAVAILABLE,
        "With Redis unreachable: \"local\" (budgets divided by rate_limit.replicas) or \"deny\" (503).")
        .default_is("local"),
    key!(integer, rate_limit.replicas, MCP_REPLICAS,
        "How many replicas share the budgets (for the local fallback only).")
        .default_is("1"),
    // [redis]
    key!(url, redis.url, MCP_REDIS_URL,
        "redis:// or rediss:// server for shared limits and session caps (no password in it)."),
    key!(path, redis.password_file, MCP_REDIS_PASSWORD_FILE,
        "File holding the Redis password, read at start."),
    key!(path, redis.ca_file, MCP_REDIS_CA_FILE,
        "CA bundle to verify a rediss:// server with, instead of the system roots."),
    key!(duration, redis.timeout, MCP_REDIS_TIMEOUT,
        "A Redis answer slower than this counts as unreachable.")
        .default_is("250ms"),
    // [sessions]
    key!(integer, sessions.max_total, MCP_MAX_SESSIONS,
        "Live MCP sessions in total; past it initialize gets 503.")
        .default_is("1000"),
    key!(integer, sessions.max_per_principal, MCP_MAX_SESSIONS_PER_PRINCIPAL,
        "Live sessions per principal; past it initialize gets 429.")
        .default_is("50"),
    key!(duration, sessions.idle_timeout, MCP_SESSION_IDLE_TIMEOUT,
        "A session with no traffic for this long is closed.")
        .default_is("5m"),
    key!(duration, sessions.id_ttl, MCP_SESSION_ID_TTL,
        "Lifetime sealed into each session id; past it the id is 404 and the client starts again.")
        .default_is("24h"),
    // [docs]
    key!(path, docs.dir, MCP_DOCS_DIR,
        "Folder of Markdown/text documents served by the built-in docs tools.")
        .default_is(".")
        .reloads(Reload::Live("the documents, followed as they change; rescanned on SIGHUP"))
        .flag("--docs-dir"),
    // [secrets]
    key!(duration, secrets.poll_interval, MCP_SECRETS_POLL_INTERVAL,
        "How often secret files are re-read when no file event arrives (at least 100ms).")
        .default_is("5s"),
    // [log]
    key!(choice, log.format, MCP_LOG_FORMAT, "Log lines on stderr: human-readable or one JSON object each.")
        .default_is("pretty")
        .flag("--log-format"),
    key!(text, log.level, MCP_LOG_LEVEL,
        "A level (error, warn, info, debug, trace) or a filter such as \"info,mcp_edge=debug\"; RUST_LOG wins.")
        .default_is("info"),
    // [metrics]
    key!(choice, metrics.mode, MCP_METRICS_MODE,
        "Prometheus /metrics on a separate plain-HTTP admin listener, on the HTTPS port behind auth, or off.")
        .default_is("admin"),
    key!(address, metrics.admin_listen, MCP_METRICS_LISTEN,
        "Address of the admin listener (/metrics, /health, /ready; no auth).")
        .default_is("127.0.0.1:9464"),
    key!(bool, metrics.status_page, MCP_STATUS_PAGE,
        "The operator status page (/status, /status.json) on the admin listener; beyond loopback it needs metrics.status_token_file.")
        .derived("on when the admin listener is on loopback or a token file is set"),
    key!(path, metrics.status_token_file, MCP_STATUS_TOKEN_FILE,
        "Secret file with the status page's token (16+ characters): Bearer for scripts, HTTP Basic password for browsers.")
        .reloads(FILE_RELOAD),
    // [proxy]
    key!(duration, proxy.call_timeout, MCP_CALL_TIMEOUT,
        "A forwarded request that takes longer is cancelled upstream and answered with an error.")
        .default_is("5m"),
    key!(duration, proxy.spawn_timeout, MCP_SPAWN_TIMEOUT,
        "Start + MCP handshake deadline for a backend process or upstream session.")
        .default_is("30s"),
    key!(integer, proxy.max_children, MCP_MAX_CHILDREN,
        "Live backend child processes at most; at the cap the idlest principal's child makes room.")
        .default_is("200"),
    key!(integer, proxy.pool_size, MCP_POOL_SIZE,
        "Children in the one pool of a share = \"all\" backend.")
        .default_is("4"),
    key!(duration, proxy.pool_idle_timeout, MCP_POOL_IDLE_TIMEOUT,
        "A pooled or per-principal child unused this long is stopped.")
        .default_is("5m"),
    key!(duration, proxy.kill_grace, MCP_KILL_GRACE,
        "Stopping a child: SIGTERM to its process group, SIGKILL after this.")
        .default_is("5s"),
    key!(duration, proxy.restart_backoff_max, MCP_RESTART_BACKOFF_MAX,
        "Longest wait before restarting a crashed backend (the backoff doubles from 200ms).")
        .default_is("30s"),
    key!(duration, proxy.input_timeout, MCP_INPUT_TIMEOUT,
        "How long a backend's question to a stateless client waits for the client's retry with the answer.")
        .default_is("5m"),
    key!(integer, proxy.max_pending_inputs, MCP_MAX_PENDING_INPUTS,
        "Backend questions awaiting a stateless client's answer, at most (all backends).")
        .default_is("1000"),
    // [legacy_sse]
    key!(bool, legacy_sse.enabled, MCP_LEGACY_SSE,
        "Serve the legacy HTTP+SSE transport (2024-11-05) at /sse and /messages.")
        .default_is("false"),
    // [cluster]
    key!(address, cluster.peer_listen, MCP_PEER_LISTEN,
        "Address of the peer listener for several replicas (unset: a single replica)."),
    key!(address, cluster.advertise, MCP_PEER_ADVERTISE,
        "host:port the other replicas reach this one at.")
        .derived("cluster.peer_listen, unless that is 0.0.0.0 or ::"),
    key!(path, cluster.key_ring_file, MCP_SESSION_KEYS_FILE,
        "Session-id key ring: one base64 32-byte key per line, the first seals (required with peer_listen).")
        .derived("a random in-memory key (a single replica)")
        .reloads(FILE_RELOAD),
    // [otel]
    key!(url, otel.endpoint, MCP_OTEL_ENDPOINT,
        "OTLP collector for traces (unset: no traces; OTEL_EXPORTER_OTLP_ENDPOINT works too)."),
    key!(choice, otel.protocol, MCP_OTEL_PROTOCOL, "OTLP transport.")
        .default_is("http/protobuf"),
    key!(ratio, otel.sample_ratio, MCP_OTEL_SAMPLE_RATIO,
        "Share of new traces recorded; a caller's sampled flag is followed.")
        .default_is("1.0"),
    key!(integer, otel.max_traces_per_second, MCP_OTEL_MAX_TRACES_PER_SECOND,
        "New traces sampled per second at most (the rest shed and counted); 0 = no limit.")
        .default_is("1000"),
    key!(path, otel.headers_file, MCP_OTEL_HEADERS_FILE,
        "Secret file of `name: value` headers sent with every export (a collector token)."),
    key!(text, otel.service_name, MCP_OTEL_SERVICE_NAME, "service.name of the spans.")
        .default_is("mcp-edge"),
    // OTEL_RESOURCE_ATTRIBUTES' own format: key=value,key=value.
    key!(list, otel.resource_attributes, MCP_OTEL_RESOURCE_ATTRIBUTES,
        "Extra resource attributes, key=value.")
        .default_is(""),
    // [audit]
    key!(choice, audit.output, MCP_AUDIT_OUTPUT,
        "Where the audit trail goes: one JSON line per tools/call, resources/read and prompts/get.")
        .derived("\"stdout\" (\"stderr\" with server.transport = \"stdio\"); \"file\" when audit.file is set"),
    key!(path, audit.file, MCP_AUDIT_FILE, "The audit file (implies audit.output = \"file\")."),
    key!(integer, audit.max_file_bytes, MCP_AUDIT_MAX_FILE_BYTES,
        "Rotate the audit file past this size (at least 4096).")
        .default_is("104857600"),
    key!(integer, audit.max_files, MCP_AUDIT_MAX_FILES, "Rotated audit files kept.")
        .default_is("5"),
    key!(bool, audit.log_arguments, MCP_AUDIT_LOG_ARGUMENTS,
        "Write the call arguments themselves, not only their SHA-256.")
        .default_is("false"),
];

/// One field of a table key (`[[backends]]`'s `command`, …): file only.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: ValueType,
    pub words: fn() -> &'static [&'static str],
    pub default: DefaultValue,
    pub reload: Reload,
    pub meaning: &'static str,
}

impl FieldSpec {
    const fn new(name: &'static str, ty: ValueType, meaning: &'static str) -> Self {
        FieldSpec {
            name,
            ty,
            words: || &[],
            default: DefaultValue::None,
            reload: Reload::Restart,
            meaning,
        }
    }

    const fn choice(mut self, words: fn() -> &'static [&'static str]) -> Self {
        self.words = words;
        self
    }

    const fn default_is(mut self, value: &'static str) -> Self {
        self.default = DefaultValue::Literal(value);
        self
    }

    const fn derived(mut self, how: &'static str) -> Self {
        self.default = DefaultValue::Derived(how);
        self
    }

    const fn reloads(mut self, reload: Reload) -> Self {
        self.reload = reload;
        self
    }
}

/// A key whose value is a table or an array of tables: set in the file only (no env
/// var), and not walked further when checking for unknown keys (serde checks inside).
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub key: &'static str,
    pub ty: ValueType,
    pub meaning: &'static str,
    /// The fields of each entry, when they are fixed (a map of names has none).
    pub fields: &'static [FieldSpec],
}

use ValueType as T;

/// Every table key, with its fields; the reference documents them after [`KEYS`].
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        key: "backends",
        ty: T::Tables,
        meaning: "The MCP servers behind the edge (none: the built-in docs tools). One keeps its own tool names; several are namespaced `<name>__<tool>`, `<name>+<uri>`.",
        fields: &[
            FieldSpec::new("name", T::Text, "a-z, 0-9 and '-', starting with a letter: the namespace prefix (required)."),
            FieldSpec::new("kind", T::Choice, "A child process on stdio, an upstream Streamable HTTP server, or the built-in docs tools.")
                .choice(Choice::<super::backends::RawBackendKind>::words)
                .derived("\"http\" when url is set, else \"stdio\""),
            FieldSpec::new("command", T::List, "stdio: the program and its arguments."),
            FieldSpec::new("env", T::Table, "stdio: extra environment variables for the child."),
            FieldSpec::new("env_allowlist", T::List, "stdio: the edge's variables passed through to the child; nothing else of its environment is.")
                .default_is("PATH,HOME,LANG,LC_ALL,LC_CTYPE,TZ,TMPDIR,USER,NODE_PATH,PYTHONPATH,VIRTUAL_ENV"),
            FieldSpec::new("cwd", T::Path, "stdio: the child's working directory.")
                .derived("the edge's"),
            FieldSpec::new("url", T::Url, "http: the upstream's Streamable HTTP endpoint."),
            FieldSpec::new("credential_file", T::Path, "http: bearer token for the upstream (the client's own token is never forwarded).")
                .reloads(Reload::Live("file contents, read at each connect")),
            FieldSpec::new("ca_file", T::Path, "http: extra CA (PEM) for the upstream's certificate."),
            FieldSpec::new("connect_timeout", T::Duration, "http: TCP/TLS connect deadline.")
                .default_is("10s"),
            FieldSpec::new("share", T::Choice, "Which callers one child or upstream session serves: one principal's session, everybody's stateless calls (a pool of proxy.pool_size), or all of one principal's calls.")
                .choice(Choice::<super::backends::Share>::words)
                .default_is("none"),
            FieldSpec::new("credentials", T::Table, "stdio, http: credentials that differ per principal (not with share = \"all\")."),
            FieldSpec::new("credentials.dir", T::Path, "Each principal's credential files: <dir>/<principal>/<NAME>.")
                .reloads(Reload::Live("file contents, read whenever a child starts")),
            FieldSpec::new("credentials.names", T::List, "The NAMEs read from files; a stdio child gets NAME=<file text>.")
                .default_is(""),
            FieldSpec::new("credentials.required", T::List, "No child starts without these.")
                .derived("every NAME"),
            FieldSpec::new("credentials.from_header", T::Table, "Client header -> NAME (taken off the request, never logged; never Authorization)."),
            FieldSpec::new("credentials.headers", T::Table, "http: upstream header -> NAME."),
            FieldSpec::new("credentials.contact", T::Text, "Whom to ask, in the missing-credential error.")
                .default_is("the administrator of this mcp-edge"),
        ],
    },
    TableSpec {
        key: "auth.jwt.keys",
        ty: T::Tables,
        meaning: "JWT verification keys, each with its own kid and algorithms.",
        fields: &[
            FieldSpec::new("kid", T::Text, "The `kid` tokens name this key by (none: tried for any token)."),
            FieldSpec::new("file", T::Path, "An HMAC secret or a PEM public key (required).")
                .reloads(FILE_RELOAD),
            FieldSpec::new("algorithms", T::List, "The algorithms this key may verify, all of one family (required)."),
        ],
    },
    TableSpec {
        key: "auth.oauth.clients",
        ty: T::Tables,
        meaning: "OAuth clients registered by the operator.",
        fields: &[
            FieldSpec::new("client_id", T::Text, "The client's id (required)."),
            FieldSpec::new("name", T::Text, "Shown on the consent page.").derived("client_id"),
            FieldSpec::new("redirect_uris", T::List, "The redirect URIs it may use (required)."),
        ],
    },
    TableSpec {
        key: "auth.oauth.oidc.group_tiers",
        ty: T::Table,
        meaning: "IdP group -> [rate_limit.tiers] entry for its members.",
        fields: &[],
    },
    TableSpec {
        key: "access.tool_scopes",
        ty: T::Table,
        meaning: "Tool name or `prefix*` glob -> scopes a JWT needs to see and call it (the most specific match wins).",
        fields: &[],
    },
    TableSpec {
        key: "access.default_tool_scopes",
        ty: T::List,
        meaning: "Scopes a JWT needs for tools no access.tool_scopes entry matches (default: none needed).",
        fields: &[],
    },
    TableSpec {
        key: "access.groups",
        ty: T::Table,
        meaning: "Named tool lists that keys-file lines use as `tools=@name`.",
        fields: &[],
    },
    TableSpec {
        key: "rate_limit.tiers",
        ty: T::Table,
        meaning: "Named budgets, chosen by `tier=` on a keys-file line or by auth.jwt.tier_claim.",
        fields: &[
            FieldSpec::new("rate", T::Rate, "The tier's budget per principal (required)."),
            FieldSpec::new("burst", T::Integer, "Calls at once before the rate applies.")
                .derived("the rate's count"),
        ],
    },
];

/// The table key `path` names, if any.
pub fn table_key(path: &str) -> Option<&'static str> {
    TABLES.iter().find(|t| t.key == path).map(|t| t.key)
}

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
    fn every_key_and_field_has_one_line_of_meaning_and_choices_have_words() {
        for spec in KEYS {
            let m = spec.meaning.trim();
            assert!(!m.is_empty() && !m.contains('\n'), "{}: meaning", spec.key);
            assert_eq!(
                spec.ty == ValueType::Choice,
                !(spec.words)().is_empty(),
                "{}: a choice lists its words, nothing else does",
                spec.key
            );
            if let DefaultValue::Derived(how) = spec.default {
                assert!(!how.trim().is_empty(), "{}: derived how?", spec.key);
            }
        }
        for table in TABLES {
            assert!(!table.meaning.trim().is_empty(), "{}: meaning", table.key);
            for f in table.fields {
                assert!(
                    !f.meaning.trim().is_empty() && !f.meaning.contains('\n'),
                    "{}.{}: meaning",
                    table.key,
                    f.name
                );
                assert_eq!(
                    f.ty == ValueType::Choice,
                    !(f.words)().is_empty(),
                    "{}.{}: words",
                    table.key,
                    f.name
                );
            }
        }
        let names: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
        for table in TABLES {
            assert!(
                !names.contains(&table.key),
                "{} is a key and a table",
                table.key
            );
        }
    }

    /// Configurations that turn on every feature whose keys only matter when it is on,
    /// so that each literal default is checked where validation actually fills it in.
    const BASELINES: &[&str] = &[
        "[tls]\ncert_file = \"/run/secrets/tls_cert\"\nkey_file = \"/run/secrets/tls_key\"\n\
         [auth]\napi_keys_file = \"/run/secrets/api_keys\"\n",
        "[tls]\nmode = \"acme\"\n[acme]\ndomains = [\"mcp.example.com\"]\n\
         [auth]\nmode = \"api-keys+jwt\"\napi_keys_file = \"/run/secrets/api_keys\"\n\
         [auth.jwt]\nissuer = \"https://idp.example.com\"\njwks_url = \"https://idp.example.com/jwks\"\n\
         [auth.oauth]\nenabled = true\n\
         [auth.oauth.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"edge\"\n\
         client_secret_file = \"/run/secrets/oidc\"\n\
         [redis]\nurl = \"redis://redis:6379\"\n[rate_limit]\nstore = \"redis\"\n\
         [otel]\nendpoint = \"http://collector:4318\"\n\
         [audit]\nfile = \"/var/log/mcp-edge/audit.jsonl\"\n\
         [[backends]]\nname = \"a\"\nurl = \"https://up.example.com/mcp\"\n",
    ];

    /// Setting a key to the default the list claims for it changes nothing in the
    /// validated configuration: a wrong default fails here, naming the key.
    #[test]
    fn each_literal_default_is_what_validation_fills_in() {
        use crate::config::{FlagOverrides, Sources, load};
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let mut wrong = Vec::new();
        for (i, base) in BASELINES.iter().enumerate() {
            let path = dir.path().join(format!("edge{i}.toml"));
            std::fs::write(&path, base).unwrap();
            let load_with = |env: &BTreeMap<&str, &str>| {
                load(Sources {
                    file: Some(path.clone()),
                    env,
                    flags: FlagOverrides::default(),
                })
                .map(|c| c.to_pretty_json())
            };
            let unset = load_with(&BTreeMap::new())
                .unwrap_or_else(|e| panic!("baseline {i} does not load: {e}"));
            let table: toml::Table = toml::from_str(base).unwrap();
            let set_by_baseline = |key: &str| {
                let mut value = Some(&table);
                let mut segments = key.split('.').peekable();
                while let Some(segment) = segments.next() {
                    let Some(t) = value else { return false };
                    match t.get(segment) {
                        Some(toml::Value::Table(inner)) => value = Some(inner),
                        Some(_) => return segments.peek().is_none(),
                        None => return false,
                    }
                }
                true
            };
            let mut checked = 0;
            for spec in KEYS {
                let DefaultValue::Literal(default) = spec.default else {
                    continue;
                };
                // A key the baseline sets is checked in the other baselines.
                if set_by_baseline(spec.key) {
                    continue;
                }
                checked += 1;
                let env = BTreeMap::from([(spec.env, default)]);
                match load_with(&env) {
                    Ok(set) if set == unset => {}
                    Ok(_) => wrong.push(format!(
                        "{}: the list says the default is {default:?}, but setting it changes \
                         the configuration (baseline {i})",
                        spec.key
                    )),
                    Err(e) => wrong.push(format!(
                        "{}: the claimed default {default:?} is refused (baseline {i}): {e}",
                        spec.key
                    )),
                }
            }
            assert!(checked > 50);
        }
        assert!(
            wrong.is_empty(),
            "wrong defaults in KEYS:\n{}",
            wrong.join("\n")
        );
    }

    /// The fields of a struct as serde knows them (`deny_unknown_fields` accepts
    /// exactly these), found by asking it to deserialize from a deserializer that
    /// records them and gives up.
    fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
        struct Fields;
        #[derive(Debug)]
        struct Found(&'static [&'static str]);
        impl fmt::Display for Found {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl std::error::Error for Found {}
        impl de::Error for Found {
            fn custom<M: fmt::Display>(_: M) -> Self {
                Found(&[])
            }
        }
        impl<'de> Deserializer<'de> for Fields {
            type Error = Found;
            fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
                Err(Found(&[]))
            }
            fn deserialize_struct<V: de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Found> {
                Err(Found(fields))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        match T::deserialize(Fields) {
            Err(Found(fields)) => fields,
            Ok(_) => &[],
        }
    }

    /// The fields the reference documents for a table are the fields the file accepts.
    #[test]
    fn table_fields_are_the_fields_the_file_accepts() {
        use super::super::backends::{RawBackend, RawCredentials};
        use super::super::oauth::RawOAuthClient;
        let documented = |key: &str, prefix: &str| -> Vec<&'static str> {
            let table = TABLES.iter().find(|t| t.key == key).unwrap();
            let mut names: Vec<_> = table
                .fields
                .iter()
                .filter_map(|f| match prefix {
                    "" if !f.name.contains('.') => Some(f.name),
                    "" => None,
                    _ => f.name.strip_prefix(prefix),
                })
                .collect();
            names.sort();
            names
        };
        let accepted = |fields: &'static [&'static str]| {
            let mut fields = fields.to_vec();
            fields.sort();
            fields
        };
        for (key, prefix, fields) in [
            ("backends", "", struct_fields::<RawBackend>()),
            (
                "backends",
                "credentials.",
                struct_fields::<RawCredentials>(),
            ),
            ("auth.jwt.keys", "", struct_fields::<RawJwtKey>()),
            ("auth.oauth.clients", "", struct_fields::<RawOAuthClient>()),
            ("rate_limit.tiers", "", struct_fields::<RawTier>()),
        ] {
            assert!(!fields.is_empty(), "{key}: no fields found");
            assert_eq!(
                documented(key, prefix),
                accepted(fields),
                "[{key}] {prefix}: the documented fields differ from the accepted ones"
            );
        }
        let allowlist = TABLES[0]
            .fields
            .iter()
            .find(|f| f.name == "env_allowlist")
            .unwrap();
        assert_eq!(
            allowlist.default,
            DefaultValue::Literal(
                // Leaked once in a test: the list wants a &'static str.
                Box::leak(
                    super::super::backends::DEFAULT_ENV_ALLOWLIST
                        .join(",")
                        .into_boxed_str()
                )
            ),
            "backends.env_allowlist: the documented default is not DEFAULT_ENV_ALLOWLIST"
        );
        let contact = TABLES[0]
            .fields
            .iter()
            .find(|f| f.name == "credentials.contact")
            .unwrap();
        assert_eq!(
            contact.default,
            DefaultValue::Literal(super::super::backends::DEFAULT_CREDENTIALS_CONTACT)
        );
    }

    #[test]
    fn env_names_are_unique() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.env).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
    }
}
