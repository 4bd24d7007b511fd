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
    pub log: RawLog,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default)]
    pub metrics: RawMetrics,
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
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub failed_auth_rate: Option<String>,
    pub failed_auth_burst: Option<u32>,
    pub max_tracked_clients: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub max_total: Option<u64>,
    pub max_per_principal: Option<u64>,
    pub idle_timeout: Option<String>,
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

/// Every key the server knows, in file order. The example config and `.env.example`
/// are tested against this list, so adding a key here without documenting it fails CI.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        key: "server.host",
        env: "MCP_HOST",
    },
    KeySpec {
        key: "server.port",
        env: "MCP_PORT",
    },
    KeySpec {
        key: "server.transport",
        env: "MCP_TRANSPORT",
    },
    KeySpec {
        key: "server.public_hostnames",
        env: "MCP_PUBLIC_HOSTNAMES",
    },
    KeySpec {
        key: "server.allowed_origins",
        env: "MCP_ALLOWED_ORIGINS",
    },
    KeySpec {
        key: "server.handshake_timeout",
        env: "MCP_HANDSHAKE_TIMEOUT",
    },
    KeySpec {
        key: "server.first_request_timeout",
        env: "MCP_FIRST_REQUEST_TIMEOUT",
    },
    KeySpec {
        key: "server.shutdown_grace",
        env: "MCP_SHUTDOWN_GRACE",
    },
    KeySpec {
        key: "server.max_body_bytes",
        env: "MCP_MAX_BODY_BYTES",
    },
    KeySpec {
        key: "server.http_redirect_port",
        env: "MCP_HTTP_REDIRECT_PORT",
    },
    KeySpec {
        key: "server.public_https_port",
        env: "MCP_PUBLIC_HTTPS_PORT",
    },
    KeySpec {
        key: "server.hsts_max_age",
        env: "MCP_HSTS_MAX_AGE",
    },
    KeySpec {
        key: "tls.mode",
        env: "MCP_TLS_MODE",
    },
    KeySpec {
        key: "tls.cert_file",
        env: "MCP_TLS_CERT_FILE",
    },
    KeySpec {
        key: "tls.key_file",
        env: "MCP_TLS_KEY_FILE",
    },
    KeySpec {
        key: "acme.domains",
        env: "MCP_ACME_DOMAINS",
    },
    KeySpec {
        key: "acme.contact",
        env: "MCP_ACME_CONTACT",
    },
    KeySpec {
        key: "acme.directory",
        env: "MCP_ACME_DIRECTORY",
    },
    KeySpec {
        key: "acme.ca_bundle",
        env: "MCP_ACME_CA_BUNDLE",
    },
    KeySpec {
        key: "acme.cache_dir",
        env: "MCP_ACME_CACHE_DIR",
    },
    KeySpec {
        key: "auth.mode",
        env: "MCP_AUTH_MODE",
    },
    KeySpec {
        key: "auth.api_keys_file",
        env: "MCP_API_KEYS_FILE",
    },
    KeySpec {
        key: "rate_limit.rate",
        env: "MCP_RATE_LIMIT",
    },
    KeySpec {
        key: "rate_limit.burst",
        env: "MCP_RATE_BURST",
    },
    KeySpec {
        key: "rate_limit.failed_auth_rate",
        env: "MCP_FAILED_AUTH_RATE",
    },
    KeySpec {
        key: "rate_limit.failed_auth_burst",
        env: "MCP_FAILED_AUTH_BURST",
    },
    KeySpec {
        key: "rate_limit.max_tracked_clients",
        env: "MCP_RATE_MAX_TRACKED",
    },
    KeySpec {
        key: "sessions.max_total",
        env: "MCP_MAX_SESSIONS",
    },
    KeySpec {
        key: "sessions.max_per_principal",
        env: "MCP_MAX_SESSIONS_PER_PRINCIPAL",
    },
    KeySpec {
        key: "sessions.idle_timeout",
        env: "MCP_SESSION_IDLE_TIMEOUT",
    },
    KeySpec {
        key: "docs.dir",
        env: "MCP_DOCS_DIR",
    },
    KeySpec {
        key: "log.format",
        env: "MCP_LOG_FORMAT",
    },
    KeySpec {
        key: "log.level",
        env: "MCP_LOG_LEVEL",
    },
    KeySpec {
        key: "metrics.mode",
        env: "MCP_METRICS_MODE",
    },
    KeySpec {
        key: "metrics.admin_listen",
        env: "MCP_METRICS_LISTEN",
    },
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
];

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
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
            "rate_limit.rate" => self.rate_limit.rate = text(),
            "rate_limit.burst" => self.rate_limit.burst = Some(number(value)?),
            "rate_limit.failed_auth_rate" => self.rate_limit.failed_auth_rate = text(),
            "rate_limit.failed_auth_burst" => {
                self.rate_limit.failed_auth_burst = Some(number(value)?)
            }
            "rate_limit.max_tracked_clients" => {
                self.rate_limit.max_tracked_clients = Some(number(value)?)
            }
            "sessions.max_total" => self.sessions.max_total = Some(number(value)?),
            "sessions.max_per_principal" => self.sessions.max_per_principal = Some(number(value)?),
            "sessions.idle_timeout" => self.sessions.idle_timeout = text(),
            "docs.dir" => self.docs.dir = text(),
            "log.format" => self.log.format = text(),
            "log.level" => self.log.level = text(),
            "metrics.mode" => self.metrics.mode = text(),
            "metrics.admin_listen" => self.metrics.admin_listen = text(),
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
                    || k.ends_with("max_tracked_clients") =>
                {
                    "10"
                }
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
