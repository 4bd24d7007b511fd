//! The legacy HTTP+SSE transport (protocol 2024-11-05) for clients that only speak it.
//!
//! `GET /sse` opens an event stream whose first event is `endpoint` with the URL to
//! post to (`/messages?sessionId=<id>`); every server message is then a `message`
//! event. `POST /messages?sessionId=<id>` takes one JSON-RPC message and answers 202.
//! rmcp has no server for this transport any more, so this bridges it with channels
//! onto the same backend handler the Streamable HTTP endpoint uses. Both routes sit
//! behind the same Host/Origin check, authentication, rate limit and session caps;
//! a session belongs to the principal that opened the stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::error::{Challenge, EdgeError};
use crate::auth::Principal;
use crate::mcp::legacy::{self, SESSION_PREFIX};
use crate::mcp::{Backend, SessionKind, SessionRegistry};
use crate::sync::lock;

struct Session {
    principal: Arc<str>,
    tx: mpsc::Sender<ClientJsonRpcMessage>,
}

pub struct LegacySse {
    backend: Backend,
    registry: Arc<SessionRegistry>,
    sessions: Mutex<HashMap<String, Session>>,
    keep_alive: Duration,
    cancel: CancellationToken,
    max_body: usize,
    /// Seals the session id handed out in the `endpoint` event (internally the inner
    /// `sse-…` id is used; `/messages` arrives rewritten or forwarded by the cluster layer).
    cluster: Arc<crate::cluster::Cluster>,
}

impl LegacySse {
    pub fn new(
        backend: Backend,
        registry: Arc<SessionRegistry>,
        cancel: CancellationToken,
        max_body: usize,
        cluster: Arc<crate::cluster::Cluster>,
    ) -> Arc<LegacySse> {
        Arc::new(LegacySse {
            backend,
            registry,
            sessions: Mutex::new(HashMap::new()),
            keep_alive: Duration::from_secs(15),
            cancel,
            max_body,
            cluster,
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        lock(&self.sessions)
    }

    /// Open legacy sessions (for tests and metrics).
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `/sse` and `/messages`, to be placed behind the `/mcp` middleware chain.
pub fn router<S: Clone + Send + Sync + 'static>(legacy: Arc<LegacySse>) -> Router<S> {
    Router::new()
        .route("/sse", get(open_stream))
        .route("/messages", post(post_message))
        .with_state(legacy)
}

fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}),
        ),
    )
        .into_response()
}

async fn open_stream(State(legacy): State<Arc<LegacySse>>, request: Request) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return EdgeError::Unauthorized(crate::auth::AuthFailure::Missing, Challenge::default())
            .into_response();
    };
    let reservation = match legacy
        .registry
        .reserve_shared(principal.name.clone(), principal.credential.clone())
        .await
    {
        Ok(r) => r,
        Err(limit) => return EdgeError::SessionLimit(limit).into_response(),
    };
    let id = format!("{SESSION_PREFIX}{}", uuid::Uuid::new_v4().simple());
    reservation.commit_as(id.clone(), SessionKind::LegacySse);
    let (in_tx, in_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let (out_tx, out_rx) = mpsc::channel::<ServerJsonRpcMessage>(64);
    legacy.sessions().insert(
        id.clone(),
        Session {
            principal: principal.name.clone(),
            tx: in_tx,
        },
    );
    let ct = legacy.cancel.child_token();
    legacy::register(&id, ct.clone());
    {
        let legacy = legacy.clone();
        let id = id.clone();
        let ct = ct.clone();
        let handler = legacy.backend.instance();
        tokio::spawn(async move {
            let out = out_tx.sink_map_err(std::io::Error::other);
            match handler.serve_with_ct((out, in_rx), ct.clone()).await {
                Ok(service) => {
                    let _ = service.waiting().await;
                }
                Err(e) => {
                    tracing::debug!(session = %id, error = %e, "legacy SSE session ended before its handshake")
                }
            }
            ct.cancel();
            legacy::unregister(&id);
            legacy.sessions().remove(&id);
            legacy.registry.remove(&id);
            tracing::debug!(session = %id, "legacy SSE session closed");
        });
    }
    tracing::info!(session = %id, principal = %principal.name, "legacy SSE session opened");
    // Dropping the stream (the client went away) ends the session.
    let guard = ct.clone().drop_guard();
    let sealed = legacy.cluster.seal(&id, &principal);
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={sealed}"));
    let messages =
        futures::stream::unfold((out_rx, guard, ct), |(mut rx, guard, stop)| async move {
            tokio::select! {
                m = rx.next() => {
                    let data = serde_json::to_string(&m?).ok()?;
                    let event = Event::default().event("message").data(data);
                    Some((Ok::<_, Infallible>(event), (rx, guard, stop)))
                }
                _ = stop.cancelled() => None,
            }
        });
    let events = futures::stream::once(async move { Ok(endpoint) }).chain(messages);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(legacy.keep_alive))
        .into_response()
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

async fn post_message(
    State(legacy): State<Arc<LegacySse>>,
    Query(query): Query<SessionQuery>,
    request: Request,
) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return EdgeError::Unauthorized(crate::auth::AuthFailure::Missing, Challenge::default())
            .into_response();
    };
    let Some(id) = query.session_id else {
        return jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "missing sessionId query parameter (open GET /sse first)",
        );
    };
    let tx = {
        let sessions = legacy.sessions();
        match sessions.get(&id) {
            Some(s) if s.principal == principal.name => s.tx.clone(),
            // Another principal's session looks like an unknown one.
            _ => return EdgeError::SessionNotFound.into_response(),
        }
    };
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, legacy.max_body).await {
        Ok(b) => b,
        Err(_) => return EdgeError::PayloadTooLarge(legacy.max_body).into_response(),
    };
    let mut message: ClientJsonRpcMessage = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return jsonrpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                &format!("not a JSON-RPC message: {e}"),
            );
        }
    };
    match &mut message {
        ClientJsonRpcMessage::Request(r) => {
            r.request.extensions_mut().insert(parts);
        }
        ClientJsonRpcMessage::Notification(n) => {
            n.notification.extensions_mut().insert(parts);
        }
        _ => {}
    }
    let mut tx = tx;
    match tx.send(message).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(_) => EdgeError::SessionNotFound.into_response(),
    }
}
