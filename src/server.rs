//! The HTTP surface: router, the `/mcp` middleware chain, health and readiness.
//!
//! `/mcp` passes, in order: Host/Origin check → failed-auth lockout (per IP) →
//! authentication → POST body read once and its JSON-RPC method inspected →
//! per-principal rate limit (calls and protocol traffic apart) → session ownership
//! and caps → rmcp.

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
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use crate::auth::{AuthFailure, Authenticator, Principal, PrincipalKind, ToolDenied, ToolPolicy};
use crate::config::Config;
use crate::error::{Challenge, EdgeError, rate_limit_headers};
use crate::mcp::{McpService, Ownership, SessionRegistry};
use crate::ratelimit::{Class, RateLimits};
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
///
/// Without an authorization server (API keys only) there is no OAuth flow to
/// discover: the document is `Null` (the well-known paths answer 404) and challenges
/// carry no `resource_metadata`, so OAuth-aware clients (mcp-remote, the Inspector)
/// use the `Authorization` header they were given instead of starting a dynamic
/// client registration that cannot succeed.
pub fn auth_metadata(config: &Config, policy: &ToolPolicy) -> (Value, Challenge) {
    let auth = &config.auth;
    let oauth = !auth.authorization_servers.is_empty();
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
    if !oauth {
        return (
            Value::Null,
            Challenge {
                // Scopes mean something to JWTs only.
                scope: if auth.jwt.is_some() {
                    scope.into()
                } else {
                    "".into()
                },
                ..Challenge::default()
            },
        );
    }
    let challenge = Challenge {
        resource_metadata: metadata_url(&auth.resource).into(),
        scope: scope.into(),
        by_path: auth
            .resources
            .iter()
            .map(|(path, resource)| (path.clone(), metadata_url(resource).into()))
            .collect(),
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
        .layer(middleware::from_fn_with_state(state.clone(), read_call))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            host_and_origin,
        ));
    let mut routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready));
    // RFC 9728 §3.1: one document per protected path, each naming that path's URL.
    let resources = &state.config.auth.resources;
    for (path, resource) in resources {
        let resource: Arc<str> = resource.as_str().into();
        let handler = move |State(state): State<AppState>| {
            let resource = resource.clone();
            async move { resource_metadata(&state, &resource) }
        };
        if path == "/mcp" {
            routes = routes.route(
                "/.well-known/oauth-protected-resource",
                get(handler.clone()),
            );
        }
        routes = routes.route(
            &format!("/.well-known/oauth-protected-resource{path}"),
            get(handler),
        );
    }
    if state.metadata.is_null() && state.auth.is_enabled() {
        // OAuth clients whose key was refused fall back to `POST /register` (dynamic
        // client registration); say why there is none instead of a bare 404.
        routes = routes.route("/register", axum::routing::post(no_registration));
    }
    routes
        .merge(mcp_routes)
        .merge(crate::admin::main_routes(&state))
        .fallback(|| async { EdgeError::NotFound })
        .with_state(state.clone())
        .layer(middleware::from_fn(telemetry::log_requests))
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn no_registration() -> Response {
    let body = json!({
        "error": "registration_not_supported",
        "error_description": "this server uses API keys, not OAuth: send `Authorization: Bearer <key>` (the key given was missing or refused)",
    });
    (http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn resource_metadata(state: &AppState, resource: &str) -> Response {
    if state.metadata.is_null() {
        return EdgeError::NotFound.into_response();
    }
    let mut doc = state.metadata.as_ref().clone();
    doc["resource"] = Value::from(resource);
    let mut response = axum::Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

async fn ready(State(state): State<AppState>) -> Response {
    crate::admin::readiness(&state)
}

/// The real client address (PROXY header / trusted `X-Forwarded-For`, set by the
/// connection layer), else the TCP peer (side listeners, in-memory tests).
pub(crate) fn client_ip(request: &Request) -> IpAddr {
    let ext = request.extensions();
    ext.get::<crate::conn::ClientAddr>()
        .map(|c| c.0.ip())
        .or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
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

/// `https://<allowed host>[:port]`, `server.allowed_origins` entries, and — only
/// when this listener is plain HTTP (TLS off, which is loopback only) —
/// `http://<loopback name>[:port]`. Keep in step with [`crate::mcp::allowed_origins`].
pub(crate) fn origin_allowed(
    origin: &str,
    hosts: &[String],
    extra: &[String],
    plain_http: bool,
) -> bool {
    if extra.iter().any(|o| o == origin) {
        return true;
    }
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match uri.scheme_str() {
        Some("https") => hosts.iter().any(|allowed| {
            allowed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(host)
        }),
        Some("http") => plain_http && crate::mcp::is_loopback_name(host),
        _ => false,
    }
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
        let ok = origin.to_str().is_ok_and(|o| {
            origin_allowed(
                o,
                hosts,
                &state.config.server.allowed_origins,
                state.config.tls == crate::config::TlsConfig::Off,
            )
        });
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
    let challenge = state.challenge.for_path(request.uri().path());
    // No credential at all is not a guess: OAuth-aware clients probe without one on
    // every start. It neither counts towards nor is hidden by the failed-auth lockout.
    let no_credential =
        state.auth.is_enabled() && !request.headers().contains_key(header::AUTHORIZATION);
    if no_credential {
        RequestLog::note(&request, |l| l.auth = Some(AuthFailure::Missing.reason()));
        return EdgeError::Unauthorized(AuthFailure::Missing, challenge).into_response();
    }
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
                        challenge,
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
            let decision = state.limits.record_failed_auth(ip).await;
            if decision.allowed {
                EdgeError::Unauthorized(failure, challenge).into_response()
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
    let class = match request.extensions().get::<McpCall>() {
        Some(call) if call.counted => Class::Call,
        _ => Class::Protocol,
    };
    let ip = client_ip(&request);
    let decision = match state.limits.check_principal(&principal, ip, class).await {
        Ok(decision) => decision,
        Err(unavailable) => {
            RequestLog::note(&request, |l| l.rate_limited = true);
            return EdgeError::LimiterUnavailable(unavailable.retry_after).into_response();
        }
    };
    if !decision.allowed {
        RequestLog::note(&request, |l| l.rate_limited = true);
        return EdgeError::RateLimited(decision).into_response();
    }
    let mut response = next.run(request).await;
    // The headers describe the call budget; protocol traffic does not touch it.
    if class == Class::Call {
        rate_limit_headers(response.headers_mut(), &decision);
    }
    response
}

/// The JSON-RPC method and tool of a POST body, for the rate limit, logs and session
/// accounting. Set by [`read_call`] as a request extension.
#[derive(Debug, Default, Clone)]
pub struct McpCall {
    pub method: Option<String>,
    pub tool: Option<String>,
    /// Counted against the principal's call budget: some message in the body asks
    /// for work (not `initialize`, `ping`, a notification or a response).
    pub counted: bool,
}

/// An in-flight token taken before the body was read (see [`read_call`]).
#[derive(Clone)]
struct InFlight(tokio_util::task::task_tracker::TaskTrackerToken);

/// The fields of one JSON-RPC message the edge looks at, borrowed from the body.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ToolParams<'a> {
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
}

/// Requests that keep a session going rather than doing work.
fn is_protocol(method: &str) -> bool {
    matches!(method, "initialize" | "ping" | "logging/setLevel")
        || method.starts_with("notifications/")
}

fn inspect(body: &[u8]) -> McpCall {
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = if batch {
        serde_json::from_slice::<Vec<Message<'_>>>(body).unwrap_or_default()
    } else {
        serde_json::from_slice::<Message<'_>>(body)
            .map(|m| vec![m])
            .unwrap_or_default()
    };
    let counted = messages
        .iter()
        .any(|m| m.method.as_deref().is_some_and(|m| !is_protocol(m)));
    let Some(first) = messages.first() else {
        return McpCall::default();
    };
    let method = first.method.as_deref().map(str::to_owned);
    let tool = (method.as_deref() == Some("tools/call"))
        .then_some(first.params)
        .flatten()
        .and_then(|p| serde_json::from_str::<ToolParams<'_>>(p.get()).ok())
        .and_then(|p| p.name.map(|n| n.into_owned()));
    McpCall {
        method,
        tool,
        counted,
    }
}

/// Read an authenticated POST's body once (bounded by `server.max_body_bytes`) and
/// inspect its JSON-RPC method, so the rate limit can tell calls from protocol
/// traffic; the bytes and the [`McpCall`] go back into the request for the steps after.
pub(crate) async fn read_call(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || request.extensions().get::<Arc<Principal>>().is_none() {
        return next.run(request).await;
    }
    if state.in_flight.is_closed() {
        return EdgeError::ShuttingDown.into_response();
    }
    // Taken before the body is read: a call still uploading when SIGTERM arrives
    // is in flight too, and shutdown waits for it.
    let token = state.in_flight.token();
    let (mut parts, body) = request.into_parts();
    let limit = state.config.server.max_body_bytes;
    // Refused from the header, without waiting for bytes that will be refused.
    if declared_length(&parts.headers).is_some_and(|n| n > limit as u64) {
        return EdgeError::PayloadTooLarge(limit).into_response();
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let timeout = state.config.server.connections.body_read_timeout;
            return body_error(&e, limit, timeout).into_response();
        }
    };
    parts.extensions.insert(inspect(&bytes));
    parts.extensions.insert(InFlight(token));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A body that stalled past `server.body_read_timeout` is a 408; anything else while
/// reading (too large, client gone) a 413.
fn body_error(error: &axum::Error, limit: usize, timeout: std::time::Duration) -> EdgeError {
    match crate::conn::is_body_timeout(error) {
        true => EdgeError::RequestTimeout(crate::conn::BodyTimeout(timeout)),
        false => EdgeError::PayloadTooLarge(limit),
    }
}

/// Session ownership, session caps, stream headers, and in-flight tracking.
pub(crate) async fn session_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        let challenge = state.challenge.for_path(request.uri().path());
        return EdgeError::Unauthorized(AuthFailure::Missing, challenge).into_response();
    };
    let mut request = request;
    // Taken by `read_call` before the body was read; held until the answer is sent.
    let token = request.extensions_mut().remove::<InFlight>().map(|t| t.0);
    let tracked = |response: Response| match &token {
        Some(token) => {
            let token = token.clone();
            response.map(|body| Body::new(telemetry::TrackedBody::new(body, token)))
        }
        None => response,
    };
    let call = (request.method() == Method::POST)
        .then(|| request.extensions().get::<McpCall>().cloned())
        .flatten()
        .unwrap_or_default();
    RequestLog::note(&request, |l| {
        l.mcp_method = call.method.clone();
        l.tool = call.tool.clone();
    });
    // Sealed session ids: refused, forwarded to their owner, or continued with the inner id.
    let (request, presented) = match crate::cluster::route(&state, &principal, request).await {
        crate::cluster::Routed::Local(request, presented) => (request, presented),
        crate::cluster::Routed::Done(response) => return tracked(response),
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
    if method == Method::POST {
        // The body was read and inspected once, by `read_call`.
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
                challenge: state.challenge.for_path(request.uri().path()),
            }
            .into_response();
        }
        if session.is_none() && call.method.as_deref() == Some("initialize") {
            match state
                .sessions
                .reserve_shared(principal.name.clone(), principal.credential.clone())
                .await
            {
                Ok(r) => reservation = Some(r),
                Err(limit) => return EdgeError::SessionLimit(limit).into_response(),
            }
        }
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
    tracked(response)
}
