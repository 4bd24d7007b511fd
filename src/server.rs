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

use crate::auth::{Authenticator, Principal, PrincipalKind, ToolDenied, ToolPolicy};
use crate::config::Config;
use crate::error::{Challenge, EdgeError, rate_limit_headers};
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
    pub policy: Arc<ToolPolicy>,
    /// What 401/403 challenges point to.
    pub challenge: Challenge,
    /// RFC 9728 protected-resource metadata, served at the well-known paths.
    pub metadata: Arc<Value>,
    /// The served certificate's expiry, for `/ready` and metrics.
    pub cert: Arc<crate::certs::CertStatus>,
    /// Session-id sealing and the peer hop to other replicas.
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// `https://host/mcp` → `https://host/.well-known/oauth-protected-resource/mcp` (RFC 9728 §3.1).
pub fn metadata_url(resource: &str) -> String {
    match resource.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => {
            let path = uri.path().trim_end_matches('/');
            format!(
                "{}://{}/.well-known/oauth-protected-resource{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map(|a| a.as_str()).unwrap_or_default(),
                path
            )
        }
        _ => String::new(),
    }
}

/// The metadata document and the challenge for this configuration.
pub fn auth_metadata(config: &Config, policy: &ToolPolicy) -> (Value, Challenge) {
    let auth = &config.auth;
    let mut scopes: Vec<String> = auth.required_scopes.clone();
    scopes.extend(policy.all_scopes());
    scopes.sort();
    scopes.dedup();
    let mut doc = json!({
        "resource": auth.resource,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-edge",
    });
    if !auth.authorization_servers.is_empty() {
        doc["authorization_servers"] = json!(auth.authorization_servers);
    }
    if !scopes.is_empty() {
        doc["scopes_supported"] = json!(scopes);
    }
    let scope = if auth.required_scopes.is_empty() {
        scopes.join(" ")
    } else {
        auth.required_scopes.join(" ")
    };
    let challenge = Challenge {
        resource_metadata: metadata_url(&auth.resource).into(),
        scope: scope.into(),
    };
    (doc, challenge)
}

pub fn router(state: AppState, mcp: McpService) -> Router {
    router_with(state, mcp, None)
}

/// [`router`] plus extra routes behind the same `/mcp` middleware chain (the legacy
/// HTTP+SSE transport's `/sse` and `/messages`).
pub fn router_with(state: AppState, mcp: McpService, extra: Option<Router<AppState>>) -> Router {
    let mut protected = Router::new().nest_service("/mcp", mcp);
    if let Some(extra) = extra {
        protected = protected.merge(extra);
    }
    let mcp_routes = protected
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
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .merge(mcp_routes)
        .merge(crate::admin::main_routes(&state))
        .fallback(|| async { EdgeError::NotFound })
        .with_state(state.clone())
        .layer(middleware::from_fn(telemetry::log_requests))
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn resource_metadata(State(state): State<AppState>) -> Response {
    let mut response = axum::Json(state.metadata.as_ref().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

async fn ready(State(state): State<AppState>) -> Response {
    crate::admin::readiness(&state)
}

pub(crate) fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

pub(crate) fn host_name(request: &Request) -> Option<String> {
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
    match state.auth.authenticate(request.headers()).await {
        Ok(principal) => {
            RequestLog::note(&request, |l| l.principal = Some(principal.name.clone()));
            if principal.kind == PrincipalKind::Jwt
                && let Some(scopes) = &principal.scopes
            {
                let required = &state.config.auth.required_scopes;
                let missing: Vec<&String> =
                    required.iter().filter(|s| !scopes.contains(*s)).collect();
                if !missing.is_empty() {
                    RequestLog::note(&request, |l| l.auth = Some("insufficient_scope"));
                    return EdgeError::InsufficientScope {
                        message: format!("this server needs scope(s) {}", required.join(" ")),
                        scope: required.join(" "),
                        challenge: state.challenge.clone(),
                    }
                    .into_response();
                }
            }
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(state.policy.clone());
            next.run(request).await
        }
        Err(failure) => {
            RequestLog::note(&request, |l| l.auth = Some(failure.reason()));
            let decision = state.limits.record_failed_auth(ip);
            if decision.allowed {
                EdgeError::Unauthorized(failure, state.challenge.clone()).into_response()
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
pub(crate) async fn session_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return EdgeError::Unauthorized(crate::auth::AuthFailure::Missing, state.challenge.clone())
            .into_response();
    };
    // Sealed session ids: refused, forwarded to their owner, or continued with the inner id.
    let (request, presented) = match crate::cluster::route(&state, &principal, request).await {
        crate::cluster::Routed::Local(request, presented) => (request, presented),
        crate::cluster::Routed::Done(response) => return response,
    };
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session {
        RequestLog::note(&request, |l| l.session = Some(id.clone()));
        match state.sessions.ownership(id, &principal.name) {
            Ownership::Foreign => {
                tracing::warn!(principal = %principal.name, "refused a request carrying another principal's session id");
                return EdgeError::SessionNotFound.into_response();
            }
            Ownership::Owner => state.sessions.touch(id, &principal.credential),
            Ownership::Unknown => {}
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
        // A JWT without a tool's scopes gets the spec's step-up challenge (403
        // insufficient_scope); other refusals are JSON-RPC errors from the backend.
        if let Some(tool) = &call.tool
            && let Err(ToolDenied::MissingScopes { missing, .. }) =
                state.policy.check(&principal, tool)
        {
            let needed = state.policy.scopes_for(tool).join(" ");
            return EdgeError::InsufficientScope {
                message: format!("tool {tool:?} needs scope(s) {}", missing.join(" ")),
                scope: needed,
                challenge: state.challenge.clone(),
            }
            .into_response();
        }
        if session.is_none() && call.method.as_deref() == Some("initialize") {
            match state
                .sessions
                .reserve(principal.name.clone(), principal.credential.clone())
            {
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
    crate::cluster::seal_response(
        &state.cluster,
        &principal,
        &mut response,
        presented.as_ref(),
    );
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
