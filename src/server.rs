//! The HTTP surface: router, the `/mcp` middleware chain, health and readiness.
//!
//! `/mcp` passes, in order: Host/Origin check → failed-auth lockout (per IP) →
//! authentication → per-principal rate limit → session ownership and caps → rmcp.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, header};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Principal};
use crate::config::Config;
use crate::error::{EdgeError, rate_limit_headers};
use crate::mcp::{McpService, Ownership, SessionRegistry};
use crate::ratelimit::RateLimits;
use crate::telemetry::{self, RequestLog};

pub const SESSION_HEADER: &str = "mcp-session-id";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<RateLimits>,
    pub sessions: Arc<SessionRegistry>,
    pub ready: Arc<AtomicBool>,
    /// In-flight `/mcp` POSTs (until their response body ends), drained on shutdown.
    pub in_flight: TaskTracker,
    pub allowed_hosts: Arc<Vec<String>>,
    pub allowed_origins: Arc<Vec<String>>,
    /// The served certificate's expiry, for `/ready` and metrics.
    pub cert: Arc<crate::certs::CertStatus>,
}

pub fn router(state: AppState, mcp: McpService) -> Router {
    let mcp_routes = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(state.clone(), session_guard))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            host_and_origin,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(mcp_routes)
        .merge(crate::admin::main_routes(&state))
        .fallback(|| async { EdgeError::NotFound })
        .with_state(state.clone())
        .layer(middleware::from_fn(telemetry::log_requests))
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<AppState>) -> Response {
    crate::admin::readiness(&state)
}

fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn host_name(request: &Request) -> Option<String> {
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))?;
    let authority: http::uri::Authority = authority.parse().ok()?;
    Some(
        authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

fn origin_allowed(origin: &str, hosts: &[String], extra: &[String]) -> bool {
    if extra.iter().any(|o| o == origin) {
        return true;
    }
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("https" | "http"))
        && uri.host().is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(h))
        })
}

/// Refuse foreign `Host` (DNS rebinding) and `Origin` (cross-site pages) before auth.
async fn host_and_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let hosts = &state.allowed_hosts;
    match host_name(&request) {
        Some(h)
            if hosts
                .iter()
                .any(|a| a.trim_start_matches('[').trim_end_matches(']') == h) => {}
        _ => {
            return EdgeError::Forbidden("Host header is not one of this server's names".into())
                .into_response();
        }
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, hosts, &state.config.server.allowed_origins));
        if !ok {
            return EdgeError::Forbidden("Origin is not allowed".into()).into_response();
        }
    }
    next.run(request).await
}

pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&request);
    if let Some(decision) = state.limits.failed_auth_lockout(ip) {
        RequestLog::note(&request, |l| l.auth = Some("locked_out"));
        return EdgeError::RateLimited(decision).into_response();
    }
    match state.auth.authenticate(request.headers()) {
        Ok(principal) => {
            RequestLog::note(&request, |l| l.principal = Some(principal.name.clone()));
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(failure) => {
            RequestLog::note(&request, |l| l.auth = Some(failure.reason()));
            let decision = state.limits.record_failed_auth(ip);
            if decision.allowed {
                EdgeError::Unauthorized(failure).into_response()
            } else {
                EdgeError::RateLimited(decision).into_response()
            }
        }
    }
}

async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return next.run(request).await;
    };
    let decision = state.limits.check_principal(&principal);
    if !decision.allowed {
        RequestLog::note(&request, |l| l.rate_limited = true);
        return EdgeError::RateLimited(decision).into_response();
    }
    let mut response = next.run(request).await;
    rate_limit_headers(response.headers_mut(), &decision);
    response
}

/// The JSON-RPC method and tool of a POST body, for logs and session accounting.
#[derive(Debug, Default, Clone)]
pub struct McpCall {
    pub method: Option<String>,
    pub tool: Option<String>,
}

fn inspect(body: &[u8]) -> McpCall {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return McpCall::default();
    };
    let message = match &value {
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let tool = (method.as_deref() == Some("tools/call"))
        .then(|| {
            message
                .pointer("/params/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .flatten();
    McpCall { method, tool }
}

/// Session ownership, session caps, stream headers, and in-flight tracking.
async fn session_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return EdgeError::Unauthorized(crate::auth::AuthFailure::Missing).into_response();
    };
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session {
        RequestLog::note(&request, |l| l.session = Some(id.clone()));
        if state.sessions.ownership(id, &principal.name) == Ownership::Foreign {
            tracing::warn!(principal = %principal.name, "refused a request carrying another principal's session id");
            return EdgeError::SessionNotFound.into_response();
        }
    }
    let method = request.method().clone();
    let mut reservation = None;
    let mut request = request;
    let mut token = None;
    if method == Method::POST {
        if state.in_flight.is_closed() {
            return EdgeError::ShuttingDown.into_response();
        }
        // Taken before the body is read: a call still uploading when SIGTERM arrives
        // is in flight too, and shutdown waits for it.
        token = Some(state.in_flight.token());
        let (parts, body) = request.into_parts();
        let limit = state.config.server.max_body_bytes;
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => return EdgeError::PayloadTooLarge(limit).into_response(),
        };
        let call = inspect(&bytes);
        if session.is_none() && call.method.as_deref() == Some("initialize") {
            match state.sessions.reserve(principal.name.clone()) {
                Ok(r) => reservation = Some(r),
                Err(limit) => return EdgeError::SessionLimit(limit).into_response(),
            }
        }
        request = Request::from_parts(parts, Body::from(bytes));
        RequestLog::note(&request, |l| {
            l.mcp_method = call.method.clone();
            l.tool = call.tool.clone();
        });
    }
    let mut response = next.run(request).await;
    if let Some(reservation) = reservation
        && let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        reservation.commit(id.to_owned());
    }
    if method == Method::DELETE
        && response.status().is_success()
        && let Some(id) = &session
    {
        state.sessions.remove(id);
    }
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let is_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_stream {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    match token {
        Some(token) => response.map(|body| Body::new(telemetry::TrackedBody::new(body, token))),
        None => response,
    }
}
