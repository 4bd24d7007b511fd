//! The HTTP side of the edge, layered on `auth`, `ratelimit`, `mcp` and `cluster`
//! (none of which know it). Start with [`chain`]: the `/mcp` steps in the order a
//! request meets them, one module per step:
//!
//! 1. [`origin`]: Host and Origin
//! 2. [`authn`]: a missing credential, the failed-auth lockout
//! 3. [`authn`]: the API key or JWT
//! 4. [`inspect`]: the POST body, read once; its JSON-RPC method and tool
//! 5. [`limit`]: the principal's call or protocol budget
//! 6. [`scope`]: a tool's scopes (step-up challenge)
//! 7. [`session`]: sealed ids, the session's owner, session caps
//! 8. rmcp's Streamable HTTP service (or [`legacy_sse`])
//!
//! Around them: [`access_log`] (request ids, the log line, request metrics),
//! [`error`] (every refusal → status + JSON-RPC error), [`metadata`] (RFC 9728),
//! [`admin`] (`/metrics`, readiness, side listeners), [`peer`] (the hop between
//! replicas).

pub mod access_log;
pub mod admin;
pub mod authn;
pub mod chain;
pub mod error;
pub mod inspect;
pub mod legacy_sse;
pub mod limit;
pub mod metadata;
pub mod origin;
pub mod outcome;
pub mod peer;
pub mod priming;
pub mod request;
pub mod scope;
pub mod session;
pub mod state;
pub mod trace;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::extract::State;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub use crate::mcp::SESSION_HEADER;
pub use error::{Challenge, EdgeError};
pub use metadata::{auth_metadata, metadata_url};
pub use state::AppState;

use crate::auth::{Authenticator, ToolPolicy};
use crate::config::Config;
use crate::mcp::backends::credentials::CredentialHeaders;
use crate::mcp::{McpService, SessionRegistry};
use crate::ratelimit::RateLimits;

/// What the shared state is made of; the rest (tool policy, challenge, metadata,
/// allowed hosts) is derived from the config by [`app_state`].
pub struct StateParts {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<RateLimits>,
    pub sessions: Arc<SessionRegistry>,
    pub cert: Arc<crate::certs::CertStatus>,
    pub cluster: Arc<crate::cluster::Cluster>,
    pub audit: Arc<crate::telemetry::audit::Audit>,
    /// The edge's own authorization server, with `[auth.oauth]`.
    pub oauth: Option<Arc<crate::oauth::OAuth>>,
    /// Refusals counted for the status page (only when it is on).
    pub refusals: Option<Arc<crate::status::Refusals>>,
}

/// The state every handler shares; not ready until `ready` is set.
pub fn app_state(parts: StateParts) -> AppState {
    let StateParts {
        config,
        auth,
        limits,
        sessions,
        cert,
        cluster,
        audit,
        oauth,
        refusals,
    } = parts;
    let policy = Arc::new(ToolPolicy::new(&config.access));
    let (metadata, challenge) = auth_metadata(&config, &policy);
    AppState::new(state::Shared {
        allowed_hosts: Arc::new(crate::mcp::allowed_hosts(&config)),
        routing: Arc::new(crate::mcp::backends::Routing::from_config(&config)),
        credential_headers: Arc::new(CredentialHeaders::from_config(&config.backends)),
        config,
        auth,
        limits,
        sessions,
        ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        in_flight: tokio_util::task::TaskTracker::new(),
        policy,
        challenge,
        metadata: Arc::new(metadata),
        cert,
        cluster,
        audit,
        oauth,
        refusals,
    })
}

pub fn router(state: AppState, mcp: McpService) -> Router {
    router_with(state, mcp, None)
}

/// [`router`] plus extra routes behind the same `/mcp` chain (the legacy HTTP+SSE
/// transport's `/sse` and `/messages`).
pub fn router_with(state: AppState, mcp: McpService, extra: Option<Router<AppState>>) -> Router {
    // rmcp's service is called through an `Arc`: as a route it would be cloned on
    // every request, twice (by the router, then by its own `call`), and its config
    // holds the allowed hosts and origins.
    let mcp = Arc::new(mcp);
    let mcp = tower::service_fn(move |request: Request| {
        let mcp = mcp.clone();
        async move { Ok::<_, Infallible>(mcp.handle(request).await) }
    });
    let mut protected = Router::new().nest_service("/mcp", mcp);
    if let Some(extra) = extra {
        protected = protected.merge(extra);
    }
    let protected = protected.layer(middleware::from_fn_with_state(state.clone(), chain::mcp));
    let mut routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready));
    // RFC 9728 §3.1: one document per protected path, each naming that path's URL.
    for (path, resource) in &state.config.auth.resources {
        let resource: Arc<str> = resource.as_str().into();
        let handler = move |State(state): State<AppState>| {
            let resource = resource.clone();
            async move { metadata::resource_metadata(&state, &resource) }
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
        routes = routes.route("/register", axum::routing::post(metadata::no_registration));
    }
    let mut app = routes
        .merge(protected)
        .merge(admin::main_routes(&state))
        .fallback(|| async { EdgeError::NotFound })
        .with_state(state.clone());
    if let Some(oauth) = &state.oauth {
        app = app.merge(crate::oauth::router(oauth.clone()));
    }
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        key_only_hosts,
    ))
    .layer(middleware::from_fn_with_state(
        state,
        access_log::log_requests,
    ))
}

/// On a host in `auth.oauth.key_only_hosts` nothing of OAuth is published: the
/// discovery documents and the authorization server's endpoints answer 404 there, so
/// a client that drops its configured API key once discovery answers (Cursor) keeps
/// using the key.
async fn key_only_hosts(
    State(state): State<AppState>,
    request: Request,
    next: middleware::Next,
) -> Response {
    if let Some(oauth) = &state.oauth
        && !oauth.config.key_only_hosts.is_empty()
        && is_oauth_path(request.uri().path())
        && request::host_name(&request).is_some_and(|h| oauth.is_key_only_host(h.as_str()))
    {
        return EdgeError::NotFound.into_response();
    }
    next.run(request).await
}

fn is_oauth_path(path: &str) -> bool {
    path.starts_with("/.well-known/")
        || path.starts_with("/authorize")
        || matches!(path, "/token" | "/register" | "/revoke" | "/oauth/jwks")
}

/// The peer listener's routes: the MCP routes behind [`chain::peer`] (the HMAC, the
/// body read and the session steps; the first replica applied the rest), unknown
/// paths too.
pub fn peer_router(state: AppState, routes: Router<AppState>) -> Router {
    routes
        .fallback(|| async { EdgeError::NotFound })
        .layer(middleware::from_fn_with_state(state.clone(), chain::peer))
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(
            state,
            access_log::log_requests,
        ))
        .layer(axum::Extension(trace::OnPeerListener))
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    admin::readiness(&state)
}
