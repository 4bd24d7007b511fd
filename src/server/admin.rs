//! Operations endpoints: `/metrics` (Prometheus text) and readiness, served on a
//! separate plain-HTTP admin listener (default 127.0.0.1:9464) or, with
//! `metrics.mode = "main"`, as `/metrics` on the HTTPS port behind API-key auth.
//! The admin listener also serves the status page (`/status`, `/status.json`; its
//! figures are `crate::status`'s), behind its token when one is configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tokio::task::JoinHandle;

use super::state::AppState;
use crate::config::{MetricsConfig, TlsConfig};
use crate::status::Status;

/// `/ready`: 200 when serving; 503 while starting or draining, while an ACME
/// certificate has not been issued yet, or when the served certificate has expired.
/// The body names the certificate's expiry either way.
pub fn readiness(state: &AppState) -> Response {
    let not_after = state.cert.not_after();
    let now = crate::certs::now_unix();
    let problem = if !state.ready.load(Ordering::Acquire) {
        Some("not ready")
    } else if matches!(state.config.tls, TlsConfig::Acme(_)) && not_after.is_none() {
        Some("waiting for the ACME certificate")
    } else if not_after.is_some_and(|t| t <= now) {
        Some("the served certificate has expired")
    } else {
        None
    };
    let certificate =
        not_after.map(|t| json!({"not_after_unix": t, "expires_in_seconds": t - now}));
    match problem {
        None => axum::Json(json!({"status": "ready", "certificate": certificate})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"status": "not ready", "reason": reason, "certificate": certificate}),
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::set_live_sessions(state.sessions.len());
    crate::metrics::set_child_processes(crate::mcp::backends::process::live_children());
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(),
    )
        .into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    readiness(&state)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Routes merged into the main router: `/metrics` behind auth when
/// `metrics.mode = "main"`, nothing otherwise.
pub fn main_routes(state: &AppState) -> Router<AppState> {
    match state.config.metrics {
        MetricsConfig::Main => {
            Router::new()
                .route("/metrics", get(metrics))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    super::authn::layer,
                ))
        }
        _ => Router::new(),
    }
}

/// Bind a plain-HTTP side listener (admin, redirect).
pub fn bind_plain(
    listen: SocketAddr,
) -> Result<(SocketAddr, std::net::TcpListener), (SocketAddr, std::io::Error)> {
    let err = |e| (listen, e);
    let listener = std::net::TcpListener::bind(listen).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    Ok((addr, listener))
}

/// Serve a side listener until aborted. Like the main listener, a connection must send
/// its first request within `server.first_request_timeout`, so idle connections cannot
/// pile up on a public port 80.
pub fn serve_plain(
    what: &'static str,
    listener: std::net::TcpListener,
    app: Router,
    first_request_timeout: std::time::Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = match axum_server::from_tcp(listener) {
            Ok(server) => {
                server
                    .first_request_timeout(first_request_timeout)
                    .serve(app.into_make_service())
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            tracing::error!(error = %e, listener = what, "listener stopped");
        }
    })
}

/// Bind the admin listener, if configured (before anything is served, so a bind
/// failure leaves nothing running).
pub fn bind(
    config: &crate::config::Config,
) -> Result<Option<(SocketAddr, std::net::TcpListener)>, (SocketAddr, std::io::Error)> {
    match config.metrics {
        MetricsConfig::Admin { listen } => bind_plain(listen).map(Some),
        _ => Ok(None),
    }
}

/// Serve `/metrics`, `/health` and `/ready` on the bound admin listener until aborted,
/// and the status page (`/status`, `/status.json`) when `status` is given.
pub fn serve(
    addr: SocketAddr,
    listener: std::net::TcpListener,
    state: &AppState,
    status: Option<Arc<Status>>,
) -> JoinHandle<()> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin listener (metrics, no auth) is reachable beyond loopback");
    }
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state.clone());
    if let Some(status) = status {
        tracing::info!(%addr, token = status.token.is_some(), "status page at /status");
        app = app.merge(status_routes(status));
    }
    let task = serve_plain(
        "admin",
        listener,
        app,
        state.config.server.first_request_timeout,
    );
    tracing::info!(%addr, "admin listener (metrics) on plain HTTP");
    task
}

/// `/status` (the page) and `/status.json` (the same figures for scripts; with
/// `?view=page`, the page's tables as the page's script reads them).
pub fn status_routes(status: Arc<Status>) -> Router {
    Router::new()
        .route("/status", get(status_page))
        .route("/status.json", get(status_json))
        .layer(middleware::from_fn_with_state(status.clone(), status_guard))
        .with_state(status)
}

/// Headers every status answer carries: never cached, never framed or sniffed.
fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn status_page(State(status): State<Arc<Status>>) -> Response {
    let html = crate::status::page::html(&status.snapshot());
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if let Ok(csp) = HeaderValue::from_str(crate::status::page::content_security_policy()) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    private(response)
}

#[derive(serde::Deserialize)]
struct JsonQuery {
    view: Option<String>,
}

async fn status_json(
    State(status): State<Arc<Status>>,
    axum::extract::Query(query): axum::extract::Query<JsonQuery>,
) -> Response {
    let snapshot = status.snapshot();
    let body = match query.view.as_deref() {
        Some("page") => crate::status::to_json(&crate::status::page::view(&snapshot)),
        _ => crate::status::to_json(&snapshot),
    };
    private(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The token, when one is configured (`Authorization: Bearer <token>`, or HTTP Basic
/// with the token as the password, which browsers ask for); without one, only a
/// request addressed to `localhost` or an IP address (a page on another site cannot
/// reach a loopback listener through a name it controls: DNS rebinding).
async fn status_guard(
    State(status): State<Arc<Status>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let refuse = |code: StatusCode, error: &str, message: &str| {
        let mut r = (
            code,
            axum::Json(json!({"error": error, "message": message})),
        )
            .into_response();
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcp-edge status\", charset=\"UTF-8\""),
            );
        }
        private(r)
    };
    match &status.token {
        Some(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(presented_token);
            if !presented.is_some_and(|t| token.matches(&t)) {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the status page needs its token (metrics.status_token_file): Authorization: Bearer <token>, or any user name with the token as password",
                );
            }
        }
        None => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !local_host(host) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "without a token the status page answers only requests to localhost or an IP address",
                );
            }
        }
    }
    next.run(request).await
}

/// The token in an `Authorization` value: a bearer token, or a Basic password.
fn presented_token(value: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

/// `localhost`, a name under it, or an IP address (with or without a port).
fn local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_bearer_and_basic() {
        assert_eq!(presented_token("Bearer abc").as_deref(), Some("abc"));
        // "ops:s3cret:x" — the password may hold colons.
        assert_eq!(
            presented_token("Basic b3BzOnMzY3JldDp4").as_deref(),
            Some("s3cret:x")
        );
        assert_eq!(presented_token("Digest x"), None);
        assert_eq!(presented_token("Basic !!"), None);
    }

    #[test]
    fn only_local_names_and_addresses_reach_a_page_without_a_token() {
        for ok in [
            "localhost:9464",
            "127.0.0.1:9464",
            "[::1]:9464",
            "10.0.0.7",
            "status.localhost",
        ] {
            assert!(local_host(ok), "{ok}");
        }
        for refused in [
            "evil.example:9464",
            "evil.example",
            "",
            "localhost.evil.example",
        ] {
            assert!(!local_host(refused), "{refused}");
        }
    }
}
