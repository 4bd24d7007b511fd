//! Upstreams over Streamable HTTP: the reqwest client built once per backend (its CA
//! bundle, its connect timeout) and the connect that opens one MCP session upstream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::{ExposeSecret, SecretString};

use super::super::link::{Conn, Forwarder, Ordered};
use super::super::traced::TracedClient;
use super::error::CallError;

/// How to reach one HTTP upstream.
#[derive(Clone)]
pub struct HttpSpec {
    url: String,
    credential_file: Option<PathBuf>,
    client: reqwest::Client,
}

impl HttpSpec {
    /// The client for `url`, trusting `ca_file` (a PEM bundle) in addition to the
    /// system roots. Errors are messages for `backends[i] (name): …`.
    pub fn new(
        url: &str,
        credential_file: Option<&Path>,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
    ) -> Result<HttpSpec, String> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: not a PEM certificate: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", ca.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(file) = credential_file {
            // Checked now so a missing secret fails the start, not the first call.
            read_credential(file)?;
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HttpSpec {
            url: url.to_owned(),
            credential_file: credential_file.map(Path::to_path_buf),
            client,
        })
    }
}

/// Open an MCP session with the upstream, sending `headers` (a principal's credentials)
/// with every request; the handshake must finish within `timeout`.
pub async fn connect(
    backend: &Arc<str>,
    spec: &HttpSpec,
    headers: Vec<(HeaderName, HeaderValue)>,
    forwarder: Forwarder,
    timeout: Duration,
) -> Result<Conn, CallError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(spec.url.as_str())
        .custom_headers(HashMap::from_iter(headers));
    if let Some(file) = &spec.credential_file {
        // Read on every connect, so a rotated secret file takes effect.
        let token = read_credential(file).map_err(|why| CallError::Credential {
            backend: backend.clone(),
            why,
        })?;
        config = config.auth_header(token.expose_secret());
    }
    let link = forwarder.link.clone();
    let transport = Ordered::new(
        StreamableHttpClientTransport::with_client(TracedClient(spec.client.clone()), config),
        link.clone(),
    );
    match tokio::time::timeout(timeout, rmcp::serve_client(forwarder, transport)).await {
        Ok(Ok(service)) => Ok(Conn {
            service,
            link,
            child: None,
            last_used: Mutex::new(Instant::now()),
            started: Instant::now(),
        }),
        Ok(Err(e)) => Err(CallError::Handshake {
            backend: backend.clone(),
            why: format!("cannot open an MCP session upstream: {e}"),
        }),
        Err(_) => Err(CallError::NoHandshake {
            backend: backend.clone(),
            timeout,
        }),
    }
}

fn read_credential(file: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("credential_file {}: {e}", file.display()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(['\n', '\r']) {
        return Err(format!(
            "credential_file {}: must hold one token on one line",
            file.display()
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}
