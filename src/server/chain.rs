//! The `/mcp` chain (and the legacy `/sse` and `/messages`): every step a request
//! meets, in order, in [`steps`]. Each step is a small function that either lets the
//! request on or refuses it with an [`EdgeError`] (the one place that maps refusals
//! to HTTP is [`super::error`]). The chain is a single layer, so the hot path pays
//! for one boxed `Next`, not one per step. The steps' spans are held, never
//! entered: each names its parent, and entering a span on every poll of the
//! step's future cost more than the rest of the span (see `server::access_log`).
//!
//! The body is read and inspected (step 4) before the rate limit (step 5) because
//! the budget a request spends depends on its JSON-RPC method: a call spends the call
//! budget, session set-up and notifications the protocol budget.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access_log::{RequestLog, TrackedBody};
use super::error::EdgeError;
use super::session::Admission;
use super::state::AppState;
use super::trace::{self, CallSpan, Spans};
use super::{authn, inspect, limit, origin, peer, scope, session};
use crate::auth::Principal;

/// The chain as a layer for the public listener.
pub async fn mcp(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let log = request.extensions().get::<RequestLog>().cloned();
    steps(&state, request, next)
        .await
        .unwrap_or_else(|refusal| refuse(log, refusal))
}

fn refuse(log: Option<RequestLog>, refusal: EdgeError) -> Response {
    if let Some(log) = log {
        log.with(|l| l.refusal = Some(refusal.reason()));
    }
    refusal.into_response()
}

async fn steps(state: &AppState, request: Request, next: Next) -> Result<Response, EdgeError> {
    let (mut parts, body) = request.into_parts();
    // 0. Credential headers for backends leave the headers at once: from here on no
    //    step, log, span or peer hop can see them; only the principal's own child does.
    if let Some(credentials) = state.credential_headers.take(&mut parts.headers) {
        parts.extensions.insert(credentials);
    }
    let ip = super::request::client_ip_of(&parts);
    let mut spans = Spans::of(&parts.extensions);
    // 1. A foreign Host (DNS rebinding) or Origin (a cross-site page).
    origin::check(state, &parts)?;
    let auth_span = spans.auth();
    let principal = async {
        // 2. No credential: always its 401, never counted as a guess. Then an address
        //    over its failed-auth budget is refused before its credential is checked.
        authn::refuse_missing_credential(state, &parts)?;
        authn::refuse_locked_out(state, &parts, ip)?;
        // 3. The API key or JWT (a wrong one counts towards the lockout).
        authn::authenticate(state, &parts, ip).await
    }
    .await
    .map_err(|e| trace::refused(&auth_span, e))?;
    drop(auth_span);
    parts.extensions.insert(principal.clone());
    parts.extensions.insert(state.policy.clone());
    let request = Request::from_parts(parts, body);
    // 4. A POST's body, read once, and its JSON-RPC method and tool.
    let inspect::Read {
        request,
        call,
        in_flight,
    } = inspect::read_call(state, request).await?;
    spans.settle(&call.trace);
    note_audited(&request, &call);
    // 5. The principal's budget: calls and protocol traffic apart.
    let limit_span = spans.rate_limit();
    let budget = limit::check(state, &principal, ip, &call, request.extensions())
        .await
        .map_err(|e| trace::refused(&limit_span, e))?;
    drop(limit_span);
    note(&request, &call);
    let response = admitted(state, &principal, request, &call, &mut spans, next).await?;
    let mut response = track(response, in_flight);
    budget.annotate(&mut response);
    Ok(response)
}

/// Steps 6–8, shared with the peer listener (where the first replica already did
/// 1–5 and the request arrives with its principal).
async fn admitted(
    state: &AppState,
    principal: &Arc<Principal>,
    mut request: Request,
    call: &inspect::McpCall,
    spans: &mut Spans,
    next: Next,
) -> Result<Response, EdgeError> {
    let session_id = request
        .headers()
        .get(crate::mcp::SESSION_HEADER)
        .and_then(|v| v.to_str().ok());
    let span = spans.call(call, principal, session_id);
    if !span.is_disabled() {
        request.extensions_mut().insert(CallSpan(span.clone()));
        RequestLog::note(&request, |l| l.call_span = Some(span.clone()));
    }
    let served = async {
        // 6. A tool the JWT lacks scopes for: the step-up challenge.
        scope::step_up(state, principal, call, request.uri().path())?;
        // 7. The session: opened, forwarded to its owner, checked against it; caps for a new one.
        let (request, ticket) = match session::admit(state, principal, request, call).await? {
            Admission::Here(request, ticket) => (request, ticket),
            Admission::Done(response) => return Ok(response),
        };
        // 8. rmcp (or the legacy transport), then the answer's session id and headers.
        let post = request.method() == http::Method::POST;
        let mut response = next.run(request).await;
        if post {
            response = super::priming::send_with_answer(response, super::priming::HOLD).await;
        }
        Ok(session::finish(state, principal, ticket, response))
    };
    served.await.map_err(|e| trace::refused(&span, e))
}

/// The peer listener's chain: the HMAC instead of steps 1–3 and 5.
pub async fn peer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let log = request.extensions().get::<RequestLog>().cloned();
    let served = async {
        let (request, principal) = peer::verified(&state, request).await?;
        trace::forwarded_by_peer(request.extensions());
        let mut spans = Spans::of(request.extensions());
        let inspect::Read {
            request,
            call,
            in_flight,
        } = inspect::read_call(&state, request).await?;
        spans.settle(&call.trace);
        note(&request, &call);
        let response = admitted(&state, &principal, request, &call, &mut spans, next).await?;
        Ok::<_, EdgeError>(track(response, in_flight))
    };
    served.await.unwrap_or_else(|refusal| refuse(log, refusal))
}

/// Hold the in-flight token until the answer has been sent (shutdown drains them).
fn track(
    response: Response,
    in_flight: Option<tokio_util::task::task_tracker::TaskTrackerToken>,
) -> Response {
    match in_flight {
        Some(token) => response.map(|body| Body::new(TrackedBody::new(body, token))),
        None => response,
    }
}

/// Note an audited call as soon as its body is read (refused later or not).
fn note_audited(request: &Request, call: &inspect::McpCall) {
    if let (Some(method), Some(audited)) = (&call.method, &call.audited) {
        RequestLog::note(request, |l| {
            l.call = Some((method.clone(), audited.clone()))
        });
    }
}

/// Log what the call is (once it has been let through the rate limit).
fn note(request: &Request, call: &inspect::McpCall) {
    RequestLog::note(request, |l| {
        l.mcp_method = call.method.clone();
        l.tool = call.tool.clone();
    });
}
