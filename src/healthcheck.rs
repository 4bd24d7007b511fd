//! `mcp-edge healthcheck`: probe `/health` on this machine (the runtime image has no curl).
//! It reads only the listen address and scheme from the configuration.

use std::time::Duration;

use crate::config::{Choice, RawConfig, TlsMode};
use crate::host::bind_ip;

/// The only configuration keys the probe reads.
pub const KEYS_READ: &[&str] = &["server.host", "server.port", "tls.mode"];

/// The URL of this server's `/health` as seen from the same host or container.
///
/// Only `server.host`, `server.port` and `tls.mode` are read: the probe must work
/// whatever the state of the secrets (key files, auth settings) the server needs.
pub fn default_url(raw: &RawConfig) -> Result<String, String> {
    let scheme = match raw.tls.mode {
        Some(Choice::Known(TlsMode::Off)) => "http",
        _ => "https",
    };
    let host = raw.server.host.as_deref().unwrap_or("127.0.0.1");
    let ip =
        bind_ip(host).map_err(|text| format!("server.host: {text:?} is not an IP address\n"))?;
    let port = raw.server.port.unwrap_or(8443);
    let host = if ip.is_unspecified() {
        if ip.is_ipv6() {
            "[::1]".to_owned()
        } else {
            "127.0.0.1".to_owned()
        }
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Ok(format!("{scheme}://{host}:{port}/health"))
}

/// GET the URL and require `200 {"status":"ok"}`.
///
/// The certificate is not verified: the probe talks to its own process over loopback,
/// where the certificate is issued for the public name, not for 127.0.0.1, and it
/// sends nothing secret.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: unreadable body: {e}"))?;
    if status.is_success() && body["status"] == "ok" {
        Ok(())
    } else {
        Err(format!("{url}: {status} {body}"))
    }
}
