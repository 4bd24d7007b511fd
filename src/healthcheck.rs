//! `mcp-edge healthcheck`: probe `/health` on this machine (the runtime image has no curl).

use std::time::Duration;

use crate::config::{Config, TlsConfig};

/// The URL of this server's `/health` as seen from the same host or container.
pub fn default_url(config: &Config) -> String {
    let scheme = match config.tls {
        TlsConfig::Off => "http",
        _ => "https",
    };
    let ip = config.server.listen.ip();
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
    format!("{scheme}://{host}:{}/health", config.server.listen.port())
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
