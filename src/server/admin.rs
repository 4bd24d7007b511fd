//! Operations endpoints: `/metrics` (Prometheus text) and readiness, served on a
//! separate plain-HTTP admin listener (default 127.0.0.1:9464) or, with
//! `metrics.mode = "main"`, as `/metrics` on the HTTPS port behind API-key auth.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use serde_json::json;
use tokio::task::JoinHandle;

use super::state::AppState;
use crate::config::{MetricsConfig, TlsConfig};

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

/// Serve `/metrics`, `/health` and `/ready` on the bound admin listener until aborted.
pub fn serve(
    addr: SocketAddr,
    listener: std::net::TcpListener,
    state: &AppState,
) -> JoinHandle<()> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin listener (metrics, no auth) is reachable beyond loopback");
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state.clone());
    let task = serve_plain(
        "admin",
        listener,
        app,
        state.config.server.first_request_timeout,
    );
    tracing::info!(%addr, "admin listener (metrics) on plain HTTP");
    task
}
