//! One request sent upstream on behalf of a downstream client: its `_meta` cleaned
//! and traced, its progress routed back with the client's own token, a client cancel
//! passed on, and the result held back until every notification before it was handed
//! over. Also reading rmcp's untagged result as the type a method needs.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ClientRequest, GetExtensions, GetMeta, RequestMetaObject, ServerResult};
use rmcp::service::{PeerRequestOptions, RequestContext, RequestHandle};
use rmcp::{RoleClient, RoleServer};
use serde::de::DeserializeOwned;

use super::super::asker::Asker;
use super::super::link::{Conn, RouteGuard};
use super::super::traced;
use super::error::CallError;

/// Send `request` on `conn` to `backend` and wait (at most `timeout`) for its result.
/// `in_session`: the caller is a session-mode client (the upstream may ask it things).
pub async fn send(
    conn: &Conn,
    backend: &Arc<str>,
    request: ClientRequest,
    context: &RequestContext<RoleServer>,
    span: &tracing::Span,
    timeout: Duration,
    in_session: bool,
) -> Result<ServerResult, CallError> {
    let how = Start {
        timeout: Some(timeout),
        asker: None,
        in_session,
    };
    let sent = start(conn, backend, request, context, span, how).await?;
    let result = finish(sent, backend, context.ct.cancelled(), timeout).await;
    conn.touch();
    result
}

/// A request written upstream, its result still to come.
pub struct Sent {
    handle: RequestHandle<RoleClient>,
    route_guard: RouteGuard,
}

/// How one request is written upstream.
pub struct Start {
    /// rmcp's own timeout; `None` when the edge bounds the wait itself.
    pub timeout: Option<Duration>,
    /// The upstream's questions go to this call (a stateless caller's input rounds).
    pub asker: Option<Asker>,
    /// The caller is a session-mode client (the upstream may ask it directly).
    pub in_session: bool,
}

/// Write `request` upstream, as `how` says.
pub async fn start(
    conn: &Conn,
    backend: &Arc<str>,
    mut request: ClientRequest,
    context: &RequestContext<RoleServer>,
    span: &tracing::Span,
    how: Start,
) -> Result<Sent, CallError> {
    let Start {
        timeout,
        asker,
        in_session,
    } = how;
    conn.touch();
    *request.get_meta_mut() = forwarded_meta(&context.meta);
    traced::propagate(span, request.get_meta_mut());
    let (route, route_guard) = conn.link.route(
        context.peer.clone(),
        context.meta.get_progress_token(),
        context.id.clone(),
        in_session,
    );
    if let Some(asker) = asker {
        conn.link.listen(&route_guard, asker);
    }
    // The transport registers the route before the request is written.
    request.extensions_mut().insert(route);
    let options = match timeout {
        Some(t) => PeerRequestOptions::with_timeout(t),
        None => PeerRequestOptions::no_options(),
    };
    let handle = conn
        .peer()
        .send_request_with_option(request, options)
        .await
        .map_err(|e| CallError::service(backend, e, timeout.unwrap_or_default()))?;
    Ok(Sent {
        handle,
        route_guard,
    })
}

/// Wait for the result of `sent`; `cancelled` passes a cancel on upstream.
/// `timeout` names the `proxy.call_timeout` in a timeout error.
pub async fn finish(
    sent: Sent,
    backend: &Arc<str>,
    cancelled: impl Future<Output = ()>,
    timeout: Duration,
) -> Result<ServerResult, CallError> {
    let Sent {
        handle,
        route_guard,
    } = sent;
    let upstream_id = handle.id.clone();
    let peer = handle.peer.clone();
    let result = tokio::select! {
        r = handle.await_response() => r.map_err(|e| CallError::service(backend, e, timeout)),
        () = cancelled => {
            let _ = peer
                .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                    Some(upstream_id),
                    Some("cancelled by the client".into()),
                ))
                .await;
            Err(CallError::Cancelled)
        }
    };
    route_guard.settle().await;
    drop(route_guard);
    result
}

/// Turn an upstream result into the type the method returns. rmcp's result type is
/// an untagged union, so a result may have been read as a look-alike variant.
pub fn expect<T: DeserializeOwned>(
    backend: &Arc<str>,
    result: ServerResult,
) -> Result<T, CallError> {
    let value = serde_json::to_value(&result).map_err(|e| CallError::Failed {
        backend: backend.clone(),
        detail: e.to_string(),
    })?;
    serde_json::from_value(value).map_err(|e| CallError::Unexpected {
        backend: backend.clone(),
        detail: e.to_string(),
    })
}

/// The downstream request's `_meta`, minus what must not cross: its progress token
/// (rmcp sets its own upstream; progress is mapped back) and the 2026 per-request
/// lifecycle keys, which describe the client's link to the edge, not the edge's link
/// to the upstream.
fn forwarded_meta(meta: &RequestMetaObject) -> RequestMetaObject {
    let mut out = meta.clone();
    out.0
        .0
        .retain(|k, _| k != "progressToken" && !k.starts_with("io.modelcontextprotocol/"));
    out
}
