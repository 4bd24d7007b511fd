//! One request sent upstream on behalf of a downstream client: its `_meta` cleaned
//! and traced, its progress routed back with the client's own token, a client cancel
//! passed on, and the result held back until every notification before it was handed
//! over. Also reading rmcp's untagged result as the type a method needs.

use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, GetExtensions, GetMeta, RequestMetaObject, ServerResult};
use rmcp::service::{PeerRequestOptions, RequestContext};
use serde::de::DeserializeOwned;

use super::super::link::Conn;
use super::super::traced;
use super::error::CallError;

/// Send `request` on `conn` to `backend` and wait (at most `timeout`) for its result.
/// `in_session`: the caller is a session-mode client (the upstream may ask it things).
pub async fn send(
    conn: &Conn,
    backend: &Arc<str>,
    mut request: ClientRequest,
    context: &RequestContext<RoleServer>,
    span: &tracing::Span,
    timeout: Duration,
    in_session: bool,
) -> Result<ServerResult, CallError> {
    conn.touch();
    *request.get_meta_mut() = forwarded_meta(&context.meta);
    traced::propagate(span, request.get_meta_mut());
    let (route, route_guard) = conn.link.route(
        context.peer.clone(),
        context.meta.get_progress_token(),
        context.id.clone(),
        in_session,
    );
    // The transport registers the route before the request is written.
    request.extensions_mut().insert(route);
    let handle = conn
        .peer()
        .send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
        .await
        .map_err(|e| CallError::service(backend, e, timeout))?;
    let upstream_id = handle.id.clone();
    let peer = handle.peer.clone();
    let result = tokio::select! {
        r = handle.await_response() => r.map_err(|e| CallError::service(backend, e, timeout)),
        _ = context.ct.cancelled() => {
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
    conn.touch();
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
