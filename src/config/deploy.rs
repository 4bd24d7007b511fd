//! Validation of the deployment settings: ACME, the HTTP→HTTPS redirect, HSTS, metrics.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Choice, Errors, RawConfig, path_of, ser_duration, valid_hostname};

/// Let's Encrypt's directories, selectable by shorthand.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where the ACME account and certificates are kept unless configured.
pub const DEFAULT_ACME_CACHE_DIR: &str = "/var/lib/mcp-edge/acme";

/// `tls.mode = "acme"`: certificates from an ACME CA via TLS-ALPN-01 on the HTTPS port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeSettings {
    /// Names on the certificate (default: `server.public_hostnames`).
    pub domains: Vec<String>,
    /// `mailto:` contacts for the ACME account.
    pub contact: Vec<String>,
    /// The directory URL (shorthands already expanded).
    pub directory: String,
    /// PEM roots trusted for the directory instead of the built-in Mozilla roots.
    pub ca_bundle: Option<PathBuf>,
    /// Account key and certificates; created 0700, files written 0600.
    pub cache_dir: PathBuf,
}

/// Plain-HTTP redirect listener and HSTS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpsConfig {
    /// Port of the plain-HTTP listener that only redirects to HTTPS (None: no listener).
    pub redirect_port: Option<u16>,
    /// The HTTPS port clients use (put in redirects; 443 is left out of the URL).
    pub public_port: u16,
    /// `Strict-Transport-Security: max-age=…` on HTTPS responses (None: no header).
    #[serde(serialize_with = "ser_opt_duration")]
    pub hsts_max_age: Option<Duration>,
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// `metrics.mode`, as written (with its listener, [`MetricsConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsMode {
    Admin,
    Main,
    Off,
}

/// Where Prometheus metrics are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum MetricsConfig {
    /// A separate plain-HTTP listener (default `127.0.0.1:9464`) with `/metrics`,
    /// `/health` and `/ready`; no auth, so keep it off public interfaces.
    Admin { listen: SocketAddr },
    /// `/metrics` on the main HTTPS port, behind the same API-key auth as `/mcp`.
    Main,
    /// Not served (still recorded in memory).
    Off,
}

pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The operators' status page (`/status`, `/status.json`) on the admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusPageConfig {
    /// A secret file holding the token the page asks for (HTTP Basic password or
    /// `Authorization: Bearer`); `None`: no token (a loopback admin listener only).
    pub token_file: Option<PathBuf>,
}

pub(super) fn acme(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    public_hostnames: &[String],
) -> AcmeSettings {
    let a = &raw.acme;
    let domains: Vec<String> = match &a.domains {
        Some(list) => list
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect(),
        None => public_hostnames.to_vec(),
    };
    if domains.is_empty() {
        e.push(
            "acme.domains",
            "must name at least one domain for the certificate",
        );
    }
    for d in &domains {
        if !valid_hostname(d) || d.parse::<IpAddr>().is_ok() || d == "localhost" {
            let origin = if a.domains.is_some() {
                "acme.domains"
            } else {
                "server.public_hostnames"
            };
            e.push(
                origin,
                format!(
                    "{d:?} cannot be on an ACME certificate: give public DNS names (set acme.domains to choose them)"
                ),
            );
        }
    }
    let mut contact = Vec::new();
    for c in a.contact.iter().flatten() {
        let c = c.trim();
        if c.is_empty() {
            continue;
        }
        let address = c.strip_prefix("mailto:").unwrap_or(c);
        if !address.contains('@') || address.contains(char::is_whitespace) {
            e.push(
                "acme.contact",
                format!("{c:?} is not an e-mail address (e.g. ops@example.com)"),
            );
        }
        contact.push(format!("mailto:{address}"));
    }
    let directory = match a.directory.as_deref().map(str::trim) {
        None | Some("letsencrypt-staging") | Some("staging") => LETS_ENCRYPT_STAGING.to_owned(),
        Some("letsencrypt") | Some("letsencrypt-production") | Some("production") => {
            LETS_ENCRYPT_PRODUCTION.to_owned()
        }
        Some(url) if url.starts_with("https://") && url.parse::<http::Uri>().is_ok() => {
            url.to_owned()
        }
        Some(other) => {
            e.push(
                "acme.directory",
                format!(
                    "must be \"letsencrypt-staging\", \"letsencrypt-production\" or an https:// directory URL, got {other:?}"
                ),
            );
            LETS_ENCRYPT_STAGING.to_owned()
        }
    };
    AcmeSettings {
        domains,
        contact,
        directory,
        ca_bundle: path_of(&a.ca_bundle),
        cache_dir: path_of(&a.cache_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_ACME_CACHE_DIR)),
    }
}

pub(super) fn https(e: &mut Errors<'_>, raw: &RawConfig, listen_port: u16) -> HttpsConfig {
    let s = &raw.server;
    let redirect_port = match s.http_redirect_port {
        None | Some(0) => None,
        Some(p) if p == listen_port => {
            e.push(
                "server.http_redirect_port",
                format!("{p} is already the HTTPS port (server.port)"),
            );
            None
        }
        Some(p) => Some(p),
    };
    let public_port = match s.public_https_port {
        Some(0) => {
            e.push("server.public_https_port", "must be a port (1-65535)");
            443
        }
        Some(p) => p,
        None => 443,
    };
    let hsts_max_age = match s.hsts_max_age.as_deref().map(str::trim) {
        None | Some("") | Some("off") => None,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(err) => {
                e.push(
                    "server.hsts_max_age",
                    format!(
                        "invalid duration {text:?} ({err}); use e.g. 365d, or 0s for no header"
                    ),
                );
                None
            }
        },
    };
    HttpsConfig {
        redirect_port,
        public_port,
        hsts_max_age,
    }
}

pub(super) fn metrics(e: &mut Errors<'_>, raw: &RawConfig) -> MetricsConfig {
    let m = &raw.metrics;
    let mode = match &m.mode {
        None => MetricsMode::Admin,
        Some(Choice::Known(mode)) => *mode,
        Some(Choice::Unknown(unknown)) => {
            e.push("metrics.mode", unknown.to_string());
            return MetricsConfig::Off;
        }
    };
    match mode {
        MetricsMode::Admin => {
            let text = m
                .admin_listen
                .as_deref()
                .unwrap_or(DEFAULT_METRICS_LISTEN)
                .trim();
            match text.parse::<SocketAddr>() {
                Ok(listen) => MetricsConfig::Admin { listen },
                Err(_) => {
                    e.push(
                        "metrics.admin_listen",
                        format!("must be <ip>:<port> such as 127.0.0.1:9464, got {text:?}"),
                    );
                    MetricsConfig::Off
                }
            }
        }
        MetricsMode::Main => MetricsConfig::Main,
        MetricsMode::Off => MetricsConfig::Off,
    }
}

/// `metrics.status_page` and `metrics.status_token_file`: on by default when the admin
/// listener is on loopback (or a token is set); beyond loopback only with a token.
pub(super) fn status_page(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    metrics: &MetricsConfig,
) -> Option<StatusPageConfig> {
    let m = &raw.metrics;
    let token_file = path_of(&m.status_token_file);
    let MetricsConfig::Admin { listen } = metrics else {
        if m.status_page == Some(true) {
            e.push(
                "metrics.status_page",
                "needs metrics.mode = \"admin\": the page is served on the admin listener only",
            );
        } else if token_file.is_some() && m.status_page.is_none() {
            e.push(
                "metrics.status_token_file",
                "is set but the status page needs metrics.mode = \"admin\"",
            );
        }
        return None;
    };
    let loopback = listen.ip().is_loopback();
    if !m.status_page.unwrap_or(loopback || token_file.is_some()) {
        return None;
    }
    if !loopback && token_file.is_none() {
        e.push(
            "metrics.status_page",
            format!(
                "the admin listener {listen} is reachable beyond loopback: set \
                 metrics.status_token_file (MCP_STATUS_TOKEN_FILE) to protect the page, or \
                 turn it off"
            ),
        );
        return None;
    }
    Some(StatusPageConfig { token_file })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{Config, FlagOverrides, Sources, TlsConfig, load};
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Config, super::super::ConfigErrors> {
        let env: BTreeMap<&str, &str> = vars.iter().copied().collect();
        load(Sources {
            file: None,
            env: &env,
            flags: FlagOverrides::default(),
        })
    }

    const DEPLOY: &[(&str, &str)] = &[("MCP_API_KEYS_FILE", "/run/secrets/api_keys")];

    #[test]
    fn acme_defaults_and_shorthands() {
        let mut vars = DEPLOY.to_vec();
        vars.extend([
            ("MCP_TLS_MODE", "acme"),
            ("MCP_PUBLIC_HOSTNAMES", "mcp.example.com"),
            ("MCP_ACME_CONTACT", "ops@example.com"),
            ("MCP_ACME_DIRECTORY", "letsencrypt-production"),
        ]);
        let c = env(&vars).unwrap();
        let TlsConfig::Acme(a) = c.tls else {
            panic!("not acme: {:?}", c.tls)
        };
        assert_eq!(a.domains, ["mcp.example.com"]);
        assert_eq!(a.contact, ["mailto:ops@example.com"]);
        assert_eq!(a.directory, LETS_ENCRYPT_PRODUCTION);
        assert_eq!(a.cache_dir, PathBuf::from(DEFAULT_ACME_CACHE_DIR));
    }

    #[test]
    fn acme_problems_name_their_keys() {
        let mut vars = DEPLOY.to_vec();
        vars.extend([
            ("MCP_TLS_MODE", "acme"),
            ("MCP_ACME_CONTACT", "not-an-address"),
            ("MCP_ACME_DIRECTORY", "http://plain.example/dir"),
        ]);
        let err = env(&vars).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        // public_hostnames defaults to localhost, which no ACME CA will certify.
        assert_eq!(
            keys,
            ["server.public_hostnames", "acme.contact", "acme.directory"]
        );
        assert!(
            err.to_string()
                .contains("acme.directory (environment variable MCP_ACME_DIRECTORY)")
        );
    }

    #[test]
    fn redirect_hsts_and_metrics() {
        let c = env(&[]).unwrap();
        assert_eq!(c.https.redirect_port, None);
        assert_eq!(c.https.hsts_max_age, None);
        assert_eq!(
            c.metrics,
            MetricsConfig::Admin {
                listen: DEFAULT_METRICS_LISTEN.parse().unwrap()
            }
        );
        let c = env(&[
            ("MCP_HTTP_REDIRECT_PORT", "8080"),
            ("MCP_HSTS_MAX_AGE", "365d"),
            ("MCP_METRICS_MODE", "main"),
        ])
        .unwrap();
        assert_eq!(c.https.redirect_port, Some(8080));
        assert_eq!(c.https.hsts_max_age, Some(Duration::from_secs(365 * 86400)));
        assert_eq!(c.metrics, MetricsConfig::Main);
        let err = env(&[
            ("MCP_HTTP_REDIRECT_PORT", "8443"),
            ("MCP_HSTS_MAX_AGE", "forever"),
            ("MCP_METRICS_LISTEN", "localhost"),
        ])
        .unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.http_redirect_port",
                "server.hsts_max_age",
                "metrics.admin_listen"
            ]
        );
    }

    #[test]
    fn the_status_page_is_on_for_loopback_and_needs_a_token_beyond_it() {
        let c = env(&[]).unwrap();
        assert_eq!(c.status_page, Some(StatusPageConfig { token_file: None }));
        let c = env(&[("MCP_STATUS_PAGE", "false")]).unwrap();
        assert_eq!(c.status_page, None);
        // Beyond loopback: off unless asked for, and then only with a token.
        let c = env(&[("MCP_METRICS_LISTEN", "0.0.0.0:9464")]).unwrap();
        assert_eq!(c.status_page, None);
        let err = env(&[
            ("MCP_METRICS_LISTEN", "0.0.0.0:9464"),
            ("MCP_STATUS_PAGE", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.0[0].key, "metrics.status_page");
        assert!(err.to_string().contains("MCP_STATUS_PAGE"), "{err}");
        let c = env(&[
            ("MCP_METRICS_LISTEN", "0.0.0.0:9464"),
            ("MCP_STATUS_TOKEN_FILE", "/run/secrets/status_token"),
        ])
        .unwrap();
        assert_eq!(
            c.status_page,
            Some(StatusPageConfig {
                token_file: Some("/run/secrets/status_token".into())
            })
        );
        // Not on the admin listener: not served, and asking for it is an error.
        let c = env(&[("MCP_METRICS_MODE", "main")]).unwrap();
        assert_eq!(c.status_page, None);
        let err = env(&[("MCP_METRICS_MODE", "off"), ("MCP_STATUS_PAGE", "on")]).unwrap_err();
        assert_eq!(err.0[0].key, "metrics.status_page");
    }
}
