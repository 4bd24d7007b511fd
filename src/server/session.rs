//! Step 7: the session a request names, and the session caps for a new one.
//!
//! A sealed session id (see [`crate::cluster`]) is opened first: one that does not
//! open, has expired or is another principal's is `404`; one another replica owns is
//! forwarded there ([`super::peer`]); one this replica owns continues with its inner
//! id, checked against the registry's owner. An `initialize` without a session takes
//! a place under the caps. On the way out the answer gets the sealed id back, a new
//! session is committed, and event streams get their no-buffering headers.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};

use super::access_log::RequestLog;
use super::error::EdgeError;
use super::inspect::McpCall;
use super::state::AppState;
use crate::auth::Principal;
use crate::cluster::Cluster;
use crate::cluster::peer::is_forwarded;
use crate::mcp::backends::request_state;
use crate::mcp::sessions::Reservation;
use crate::mcp::{Ownership, SESSION_HEADER};

/// The legacy transport's message endpoint, whose session id is in the query.
const LEGACY_MESSAGES: &str = "/messages";

/// What [`admit`] decided. Returned once per request and moved straight on, so the
/// size difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Admission {
    /// Served here, by rmcp; [`finish`] completes the answer.
    Here(Request, Ticket),
    /// Forwarded to the session's owner (its answer), or refused.
    Done(Response),
}

/// What [`finish`] needs to know about an admitted request.
pub struct Ticket {
    method: Method,
    session: Option<String>,
    presented: Option<Sealed>,
    reservation: Option<Reservation>,
}

pub async fn admit(
    state: &AppState,
    principal: &Arc<Principal>,
    request: Request,
    call: &McpCall,
) -> Result<Admission, EdgeError> {
    let (request, presented) = match route(state, principal, request, call).await {
        Routed::Local(request, presented) => (request, presented),
        Routed::Done(response) => return Ok(Admission::Done(response)),
    };
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session {
        RequestLog::note(&request, |l| l.session = Some(id.clone()));
        let claimed = state
            .sessions
            .claim(id, &principal.name, &principal.credential);
        if claimed == Ownership::Foreign {
            tracing::warn!(principal = %principal.name, "refused a request carrying another principal's session id");
            return Err(EdgeError::SessionNotFound);
        }
    }
    let method = request.method().clone();
    let opens_session =
        method == Method::POST && session.is_none() && call.method.as_deref() == Some("initialize");
    let reservation = match opens_session {
        true => Some(
            state
                .sessions
                .reserve_shared(principal.name.clone(), principal.credential.clone())
                .await
                .map_err(EdgeError::SessionLimit)?,
        ),
        false => None,
    };
    Ok(Admission::Here(
        request,
        Ticket {
            method,
            session,
            presented,
            reservation,
        },
    ))
}

/// Complete rmcp's answer to an admitted request.
pub fn finish(
    state: &AppState,
    principal: &Principal,
    ticket: Ticket,
    mut response: Response,
) -> Response {
    if let Some(reservation) = ticket.reservation
        && let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        reservation.commit(id.to_owned());
    }
    if ticket.method == Method::DELETE && response.status().is_success() {
        if let Some(id) = &ticket.session {
            state.sessions.remove(id);
        }
        closed_session_answer(&mut response);
    }
    seal_response(
        &state.cluster,
        principal,
        &mut response,
        ticket.presented.as_ref(),
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
    response
}

/// A session closed by `DELETE` is answered `204 No Content`: rmcp says `202`, which
/// the official Python SDK takes for a failure and warns about at every exit (it
/// accepts 200 and 204; the TypeScript SDK, and so mcp-remote and the Inspector,
/// accept any 2xx).
fn closed_session_answer(response: &mut Response) {
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    *response.body_mut() = axum::body::Body::empty();
    response.headers_mut().remove(header::CONTENT_TYPE);
    response.headers_mut().remove(header::CONTENT_LENGTH);
}

/// Where a request's session lives, as decided by [`route`].
enum Routed {
    /// Served here; the header (or legacy query) now carries the inner id. Holds the
    /// sealed id as presented, to put back on the response.
    Local(Request, Option<Sealed>),
    /// Refused or forwarded: the response to send.
    Done(Response),
}

/// The sealed id a request presented and what it opened to.
struct Sealed {
    sealed: String,
    inner: String,
}

fn legacy_session(request: &Request) -> Option<String> {
    if request.uri().path() != LEGACY_MESSAGES {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        pair.strip_prefix("sessionId=")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    })
}

fn replace_legacy_session(request: &mut Request, inner: &str) {
    let query: Vec<String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .map(|pair| match pair.strip_prefix("sessionId=") {
            Some(_) => format!("sessionId={inner}"),
            None => pair.to_owned(),
        })
        .collect();
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = format!("{}?{}", request.uri().path(), query.join("&"))
        .parse()
        .ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// Open the session id of a request (header, or `sessionId` on `/messages`), then
/// refuse it, forward it to its owner, or rewrite it to the inner id.
async fn route(
    state: &AppState,
    principal: &Arc<Principal>,
    mut request: Request,
    call: &McpCall,
) -> Routed {
    let from_header = request
        .headers()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    let (sealed, in_query) = match from_header {
        Some(Ok(id)) => (id, false),
        Some(Err(_)) => return Routed::Done(EdgeError::SessionNotFound.into_response()),
        None => match legacy_session(&request) {
            Some(id) => (id, true),
            None => return route_answer(state, principal, request, call).await,
        },
    };
    let cluster = &state.cluster;
    let Some(claims) = cluster.open(&sealed, principal) else {
        tracing::debug!(principal = %principal.name, "session id does not open (tampered, expired, unknown key or another principal's)");
        return Routed::Done(EdgeError::SessionNotFound.into_response());
    };
    if !cluster.is_local(&claims) {
        let response = match cluster.peer_client() {
            Some(client) if !claims.owner.is_empty() && !is_forwarded(&request) => {
                RequestLog::note(&request, |l| l.hop = Some(format!("to {}", claims.owner)));
                let unreachable = EdgeError::SessionNotFound;
                super::peer::forward(
                    state,
                    client,
                    principal,
                    &claims.owner,
                    request,
                    unreachable,
                )
                .await
            }
            _ => EdgeError::SessionNotFound.into_response(),
        };
        return Routed::Done(response);
    }
    if in_query {
        replace_legacy_session(&mut request, &claims.inner);
    } else if let Ok(v) = HeaderValue::from_str(&claims.inner) {
        request.headers_mut().insert(SESSION_HEADER, v);
    }
    Routed::Local(
        request,
        Some(Sealed {
            sealed,
            inner: claims.inner,
        }),
    )
}

/// A stateless retry answering a backend's question (it carries the edge's
/// `requestState`) goes to the replica holding the question. A state that does not
/// open, or names this replica, is left to the handler, which refuses it (or takes
/// it) with the request's own JSON-RPC id.
async fn route_answer(
    state: &AppState,
    principal: &Arc<Principal>,
    request: Request,
    call: &McpCall,
) -> Routed {
    let Some(presented) = &call.request_state else {
        return Routed::Local(request, None);
    };
    let now = request_state::unix_now();
    let cluster = &*state.cluster;
    let Ok(claims) = request_state::open(cluster, presented, &principal.name, now) else {
        return Routed::Local(request, None);
    };
    if claims.owner.is_empty() || claims.owner == cluster.advertise().unwrap_or_default() {
        return Routed::Local(request, None);
    }
    match cluster.peer_client() {
        Some(client) if !is_forwarded(&request) => {
            RequestLog::note(&request, |l| l.hop = Some(format!("to {}", claims.owner)));
            let unreachable = EdgeError::RequestStateRefused;
            let response = super::peer::forward(
                state,
                client,
                principal,
                &claims.owner,
                request,
                unreachable,
            )
            .await;
            Routed::Done(response)
        }
        _ => Routed::Local(request, None),
    }
}

/// Put the sealed id on a response in place of rmcp's inner one (a new session from
/// `initialize`, or an echo of the request's own id).
fn seal_response(
    cluster: &Cluster,
    principal: &Principal,
    response: &mut Response,
    presented: Option<&Sealed>,
) {
    let Some(inner) = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return;
    };
    let sealed = match presented {
        Some(p) if p.inner == inner => p.sealed.clone(),
        _ => cluster.seal(&inner, principal),
    };
    if let Ok(v) = HeaderValue::from_str(&sealed) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_query_is_rewritten() {
        let mut request = Request::builder()
            .uri("/messages?x=1&sessionId=SEALED")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(legacy_session(&request).as_deref(), Some("SEALED"));
        replace_legacy_session(&mut request, "sse-abc");
        assert_eq!(request.uri(), "/messages?x=1&sessionId=sse-abc");
    }
}
