//! The optional plain-HTTP listener (`server.http_redirect_port`) that only
//! redirects to HTTPS, and the optional HSTS header on HTTPS responses.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
use crate::host::HostName;

/// Add `Strict-Transport-Security` to every response when configured (HTTPS only).
pub fn with_hsts(router: Router, config: &Config, tls: bool) -> Router {
    match config.https.hsts_max_age {
        Some(age) if tls => {
            let value = format!("max-age={}", age.as_secs());
            match HeaderValue::from_str(&value) {
                Ok(v) => router.layer(SetResponseHeaderLayer::overriding(
                    header::STRICT_TRANSPORT_SECURITY,
                    v,
                )),
                Err(_) => router,
            }
        }
        _ => router,
    }
}

/// Where a plain-HTTP request is sent: the same host (when it is one of ours; else
/// the first public name, so this is never an open redirect) and path on HTTPS.
pub fn location(request: &Request, hosts: &[String], fallback: &str, https_port: u16) -> String {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(HostName::from_authority)
        .filter(|h| hosts.iter().any(|a| h.is(a)))
        .map_or_else(|| fallback.to_owned(), |h| h.to_string());
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    }
}

/// Bind the redirect listener, if configured (before anything is served).
pub fn bind(
    config: &Config,
) -> Result<Option<(SocketAddr, std::net::TcpListener)>, (SocketAddr, std::io::Error)> {
    match config.https.redirect_port {
        Some(port) => {
            crate::server::admin::bind_plain(SocketAddr::new(config.server.listen.ip(), port))
                .map(Some)
        }
        None => Ok(None),
    }
}

/// Serve redirects on the bound listener until aborted.
pub fn serve(
    addr: SocketAddr,
    listener: std::net::TcpListener,
    config: &Config,
    hosts: Arc<Vec<String>>,
) -> JoinHandle<()> {
    let fallback = config
        .server
        .public_hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let https_port = config.https.public_port;
    let app = Router::new().fallback(move |request: Request| {
        let hosts = hosts.clone();
        let fallback = fallback.clone();
        async move {
            let to = location(&request, &hosts, &fallback, https_port);
            let mut response: Response = (StatusCode::PERMANENT_REDIRECT, "").into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            response
        }
    });
    let task = crate::server::admin::serve_plain(
        "redirect",
        listener,
        app,
        config.server.first_request_timeout,
    );
    tracing::info!(%addr, "plain-HTTP listener (redirects to HTTPS only)");
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .header("host", host)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn redirects_keep_our_hosts_and_paths_only() {
        let hosts = vec!["mcp.example.com".to_string()];
        assert_eq!(
            location(
                &request("mcp.example.com", "/mcp?x=1"),
                &hosts,
                "mcp.example.com",
                443
            ),
            "https://mcp.example.com/mcp?x=1"
        );
        assert_eq!(
            location(
                &request("evil.example", "/"),
                &hosts,
                "mcp.example.com",
                8443
            ),
            "https://mcp.example.com:8443/"
        );
    }
}
