//! The client side of the proxy: one rmcp client connection to an upstream MCP server
//! (a child process or an HTTP server), and the [`Forwarder`] that carries the
//! upstream's notifications and requests back to the downstream client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientConfig, ClientResult, ErrorCode, GetExtensions, GetMeta, ProgressNotificationParam,
    ProgressToken, RequestId, ServerNotification, ServerRequest,
};
use rmcp::service::{
    NotificationContext, OriginatingRequestId, Peer, RequestContext, RunningService,
};
use rmcp::{ErrorData, RoleClient, RoleServer, Service};

use super::process::ChildProc;

/// Where one forwarded request's progress goes: the downstream client and its own token.
#[derive(Clone)]
pub struct Route {
    pub peer: Peer<RoleServer>,
    pub client_token: Option<ProgressToken>,
    pub downstream_id: RequestId,
}

/// State shared by a connection's [`Forwarder`] and the proxy that sends through it.
pub struct Link {
    pub backend: Arc<str>,
    /// `Some(prefix)` when several backends are namespaced: resource URIs in
    /// notifications get `<prefix>+`.
    pub uri_prefix: Option<String>,
    /// The downstream session's client, for session-mode connections. Pooled
    /// (stateless) connections have none: only progress reaches their callers.
    pub session_peer: Option<Peer<RoleServer>>,
    /// Upstream progress token (rmcp assigns its own) → the caller to tell.
    routes: Mutex<HashMap<ProgressToken, Route>>,
    /// Downstream requests in flight on this connection, oldest first.
    in_flight: Mutex<Vec<RequestId>>,
    pub call_timeout: Duration,
    pub label: Arc<Mutex<String>>,
}

impl Link {
    pub fn new(
        backend: Arc<str>,
        uri_prefix: Option<String>,
        session_peer: Option<Peer<RoleServer>>,
        call_timeout: Duration,
        label: Arc<Mutex<String>>,
    ) -> Arc<Link> {
        Arc::new(Link {
            backend,
            uri_prefix,
            session_peer,
            routes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(Vec::new()),
            call_timeout,
            label,
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, Vec<RequestId>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remember where progress for `token` goes until the guard is dropped.
    pub fn route(self: &Arc<Self>, token: ProgressToken, route: Route) -> RouteGuard {
        self.in_flight().push(route.downstream_id.clone());
        self.routes().insert(token.clone(), route.clone());
        RouteGuard {
            link: self.clone(),
            token,
            downstream_id: route.downstream_id,
        }
    }

    fn lookup(&self, token: &ProgressToken) -> Option<Route> {
        self.routes().get(token).cloned()
    }
}

pub struct RouteGuard {
    link: Arc<Link>,
    token: ProgressToken,
    downstream_id: RequestId,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.link.routes().remove(&self.token);
        let mut in_flight = self.link.in_flight();
        if let Some(i) = in_flight.iter().position(|id| *id == self.downstream_id) {
            in_flight.remove(i);
        }
    }
}

/// rmcp client service for one upstream connection: forwards what the upstream sends.
pub struct Forwarder {
    pub link: Arc<Link>,
    pub client_info: ClientConfig,
}

impl Forwarder {
    async fn forward_progress(link: Arc<Link>, mut params: ProgressNotificationParam) {
        // The route is registered right after the request is handed to rmcp; a very
        // fast upstream can report progress before that, so look again briefly.
        let deadline = Instant::now() + Duration::from_millis(250);
        let route = loop {
            if let Some(route) = link.lookup(&params.progress_token) {
                break Some(route);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let Some(route) = route else {
            tracing::debug!(backend = %link.backend, "progress for a request no longer in flight");
            return;
        };
        // The client sees its own token, never the one rmcp made for the upstream.
        let Some(token) = route.client_token else {
            return;
        };
        params.progress_token = token;
        let _ = route.peer.notify_progress(params).await;
    }
}

impl Service<RoleClient> for Forwarder {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        let Some(peer) = self.link.session_peer.clone() else {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "this client has no session (stateless request): server-to-client requests are not available",
                None,
            ));
        };
        let mut request = request;
        // Ride the stream of the downstream call that (most likely) caused it: the
        // newest request in flight on this connection.
        let originating = self.link.in_flight().last().cloned();
        if let Some(id) = originating {
            request.extensions_mut().insert(OriginatingRequestId(id));
        }
        // The upstream's _meta (its progress token) means nothing to the client.
        request.get_meta_mut().0.remove("progressToken");
        let send = peer.send_request(request);
        tokio::select! {
            result = tokio::time::timeout(self.link.call_timeout, send) => match result {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(rmcp::service::ServiceError::McpError(e))) => Err(e),
                Ok(Err(e)) => Err(ErrorData::internal_error(format!("the client did not answer: {e}"), None)),
                Err(_) => Err(ErrorData::internal_error("the client did not answer in time", None)),
            },
            _ = context.ct.cancelled() => Err(ErrorData::internal_error("cancelled by the server", None)),
        }
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let link = self.link.clone();
        match notification {
            ServerNotification::ProgressNotification(n) => {
                tokio::spawn(Self::forward_progress(link, n.params));
            }
            other => {
                let Some(peer) = link.session_peer.clone() else {
                    return Ok(());
                };
                let other = match (other, &link.uri_prefix) {
                    (ServerNotification::ResourceUpdatedNotification(mut n), Some(prefix)) => {
                        n.params.uri = format!("{prefix}+{}", n.params.uri);
                        ServerNotification::ResourceUpdatedNotification(n)
                    }
                    // Cancellation of upstream → client requests is handled through the
                    // request context; the ids mean nothing downstream.
                    (ServerNotification::CancelledNotification(_), _) => return Ok(()),
                    (other, _) => other,
                };
                tokio::spawn(async move {
                    let _ = peer.send_notification(other).await;
                });
            }
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.client_info.clone()
    }
}

/// One live upstream connection.
pub struct Conn {
    pub service: RunningService<RoleClient, Forwarder>,
    pub link: Arc<Link>,
    pub child: Option<ChildProc>,
    pub last_used: Mutex<Instant>,
    pub started: Instant,
}

impl Conn {
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    pub fn is_alive(&self) -> bool {
        !self.service.is_closed()
            && !self.peer().is_transport_closed()
            && !self.child.as_ref().is_some_and(|c| c.has_exited())
    }

    pub fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}
