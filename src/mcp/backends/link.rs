//! The client side of the proxy: one rmcp client connection to an upstream MCP server
//! (a child process or an HTTP server), the [`Ordered`] transport that carries the
//! upstream's notifications back to the downstream client in the order they came, and
//! the [`Forwarder`] that answers the upstream's requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientConfig, ClientResult, ErrorCode, GetExtensions, GetMeta, JsonRpcMessage,
    JsonRpcNotification, ProgressToken, RequestId, ServerNotification, ServerRequest,
};
use rmcp::service::{
    NotificationContext, OriginatingRequestId, Peer, RequestContext, RunningService,
    RxJsonRpcMessage, TxJsonRpcMessage,
};
use rmcp::transport::Transport;
use rmcp::{ErrorData, RoleClient, RoleServer, Service};
use tokio::sync::{mpsc, watch};

use super::asker::Asker;
use super::process::ChildProc;
use crate::sync::lock;

/// Notifications buffered per upstream connection before the upstream's reader waits.
const QUEUE: usize = 64;
/// How long a slow client may hold things up: the reader waiting for room in the
/// queue, one notification being handed to the client, a result waiting for the
/// notifications before it. Past it the notification is dropped (logged), never the
/// connection.
const SLOW_CLIENT_WAIT: Duration = Duration::from_secs(5);

/// Where one forwarded request's progress goes: the downstream client and its own
/// token. Travels in the upstream request's extensions so [`Ordered::send`] can
/// register it under the upstream token before the request is written.
#[derive(Clone)]
pub struct Route {
    pub peer: Peer<RoleServer>,
    pub client_token: Option<ProgressToken>,
    pub downstream_id: RequestId,
    /// The caller is a session-mode client (it can be asked things on its stream).
    pub in_session: bool,
    call: u64,
    /// Set when the response arrives: how many notifications were queued by then.
    barrier: Arc<AtomicU64>,
}

struct RouteEntry {
    upstream_id: RequestId,
    route: Route,
}

/// One notification on its way downstream.
struct Outgoing {
    to: Audience,
    notification: ServerNotification,
}

/// Who gets one notification: the caller of one request (its progress), or every
/// session listening to the connection (logging, list changes, resource updates).
enum Audience {
    Caller(Peer<RoleServer>),
    Sessions(Vec<Peer<RoleServer>>),
}

/// The downstream sessions a connection's own notifications go to: the one session
/// of a session's child, every session of the principal whose child it is (`share =
/// "principal"`), none for a connection that serves only stateless calls. Shared with
/// the principal's entry, so it outlives a restart of the child.
#[derive(Clone, Default)]
pub struct Listeners(Arc<Mutex<Vec<Listener>>>);

/// One attached session: its guard's id and its client.
type Listener = (u64, Peer<RoleServer>);

impl Listeners {
    /// The listeners of a session's own connection: that session alone.
    pub fn one(peer: Peer<RoleServer>) -> (Listeners, Listening) {
        let listeners = Listeners::default();
        let listening = listeners.attach(peer);
        (listeners, listening)
    }

    /// `peer` hears the connection's notifications until the guard is dropped.
    pub fn attach(&self, peer: Peer<RoleServer>) -> Listening {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        lock(&self.0).push((id, peer));
        Listening {
            listeners: self.clone(),
            id,
        }
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }

    fn peers(&self) -> Vec<Peer<RoleServer>> {
        lock(&self.0).iter().map(|(_, p)| p.clone()).collect()
    }

    /// The session that attached last (asked when no session's request is in flight).
    fn newest(&self) -> Option<Peer<RoleServer>> {
        lock(&self.0).last().map(|(_, p)| p.clone())
    }
}

/// One session listening to a connection; dropped with the session.
pub struct Listening {
    listeners: Listeners,
    id: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        lock(&self.listeners.0).retain(|(id, _)| *id != self.id);
    }
}

/// A downstream request in flight on a connection.
struct InFlight {
    call: u64,
    downstream_id: RequestId,
    /// Its client, when that is a session (which can be asked things).
    session: Option<Peer<RoleServer>>,
}

/// State shared by a connection's transport, its [`Forwarder`] and the proxy.
pub struct Link {
    pub backend: Arc<str>,
    /// `Some(prefix)` when several backends are namespaced: resource URIs in
    /// notifications get `<prefix>+`.
    pub uri_prefix: Option<String>,
    /// The downstream sessions this connection's own notifications go to. None for
    /// connections that serve only stateless calls: only progress reaches their callers.
    pub listeners: Listeners,
    /// Upstream progress token (rmcp assigns its own) → the caller to tell.
    routes: Mutex<HashMap<ProgressToken, RouteEntry>>,
    /// Downstream requests in flight on this connection, oldest first.
    in_flight: Mutex<Vec<InFlight>>,
    /// Stateless calls in flight that can take the upstream's questions, oldest first.
    askers: Mutex<Vec<(u64, Asker)>>,
    next_call: AtomicU64,
    /// The one ordered queue of this connection's notifications, drained by one task.
    /// Boxed: tokio allocates a channel's first block of 32 slots at once, and a
    /// connection (one per session) mostly never queues anything.
    queue: mpsc::Sender<Box<Outgoing>>,
    /// Notifications put in `queue` so far, and (from the task) handed to the client.
    queued: AtomicU64,
    delivered: watch::Receiver<u64>,
    pub call_timeout: Duration,
    pub label: Arc<Mutex<String>>,
}

impl Link {
    pub fn new(
        backend: Arc<str>,
        uri_prefix: Option<String>,
        listeners: Listeners,
        call_timeout: Duration,
        label: Arc<Mutex<String>>,
    ) -> Arc<Link> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let (delivered_tx, delivered) = watch::channel(0);
        tokio::spawn(deliver_in_order(backend.clone(), rx, delivered_tx));
        Arc::new(Link {
            backend,
            uri_prefix,
            listeners,
            routes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(Vec::new()),
            askers: Mutex::new(Vec::new()),
            next_call: AtomicU64::new(0),
            queue,
            queued: AtomicU64::new(0),
            delivered,
            call_timeout,
            label,
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, RouteEntry>> {
        lock(&self.routes)
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, Vec<InFlight>> {
        lock(&self.in_flight)
    }

    /// A route for one downstream call, to put in the upstream request's extensions;
    /// it is forgotten when the guard is dropped.
    pub fn route(
        self: &Arc<Self>,
        peer: Peer<RoleServer>,
        client_token: Option<ProgressToken>,
        downstream_id: RequestId,
        in_session: bool,
    ) -> (Route, RouteGuard) {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        self.in_flight().push(InFlight {
            call,
            downstream_id: downstream_id.clone(),
            session: in_session.then(|| peer.clone()),
        });
        let route = Route {
            peer,
            client_token,
            downstream_id,
            in_session,
            call,
            barrier: Arc::new(AtomicU64::new(0)),
        };
        let guard = RouteGuard {
            link: self.clone(),
            call,
            barrier: route.barrier.clone(),
        };
        (route, guard)
    }

    /// Let the call of `guard` take the upstream's questions (a stateless call).
    pub fn listen(&self, guard: &RouteGuard, asker: Asker) {
        lock(&self.askers).push((guard.call, asker));
    }

    /// The call an upstream question goes to: the newest one listening (as a session's
    /// question rides its newest request), and none when calls of several principals
    /// share the connection (`share = "all"`): a question must not reach another
    /// principal.
    fn asker(&self) -> Option<Asker> {
        let askers = lock(&self.askers);
        let (_, newest) = askers.last()?;
        askers
            .iter()
            .all(|(_, a)| a.principal == newest.principal)
            .then(|| newest.clone())
    }

    /// Sort one message from the upstream, in arrival order: notifications go to the
    /// ordered queue (or `parked`, when it is full); what rmcp must see is returned.
    fn dispatch(
        &self,
        message: RxJsonRpcMessage<RoleClient>,
        parked: &mut Option<Parked>,
    ) -> Option<RxJsonRpcMessage<RoleClient>> {
        let id = match message {
            JsonRpcMessage::Notification(JsonRpcNotification { notification, .. })
                if !matches!(notification, ServerNotification::CancelledNotification(_)) =>
            {
                if let Some(out) = self.outgoing(notification) {
                    self.enqueue(Box::new(out), parked);
                }
                return None;
            }
            JsonRpcMessage::Response(ref r) => Some(r.id.clone()),
            JsonRpcMessage::Error(ref e) => e.id.clone(),
            _ => None,
        };
        if let Some(id) = id {
            // Everything this call can have had from the upstream is queued now; the
            // call returns once the client has it. Later progress for it is stale.
            let queued = self.queued.load(Ordering::Acquire);
            self.routes().retain(|_, e| {
                if e.upstream_id == id {
                    e.route.barrier.store(queued, Ordering::Release);
                    false
                } else {
                    true
                }
            });
        }
        Some(message)
    }

    /// Who gets `notification`, as the client must see it; `None` drops it.
    fn outgoing(&self, notification: ServerNotification) -> Option<Outgoing> {
        let (to, mut notification) = match notification {
            ServerNotification::ProgressNotification(mut n) => {
                let Some(route) = self
                    .routes()
                    .get(&n.params.progress_token)
                    .map(|e| e.route.clone())
                else {
                    tracing::debug!(backend = %self.backend, "progress for a request no longer in flight");
                    return None;
                };
                // The client sees its own token, never the one rmcp made for the upstream.
                n.params.progress_token = route.client_token?;
                (
                    Audience::Caller(route.peer),
                    ServerNotification::ProgressNotification(n),
                )
            }
            other => {
                let sessions = self.listeners.peers();
                if sessions.is_empty() {
                    return None;
                }
                let other = match other {
                    ServerNotification::ResourceUpdatedNotification(mut n)
                        if self.uri_prefix.is_some() =>
                    {
                        let prefix = self.uri_prefix.as_deref().unwrap_or_default();
                        n.params.uri = format!("{prefix}+{}", n.params.uri);
                        ServerNotification::ResourceUpdatedNotification(n)
                    }
                    other => other,
                };
                (Audience::Sessions(sessions), other)
            }
        };
        // The upstream's notification _meta describes its link to the edge.
        *notification.get_meta_mut() = Default::default();
        Some(Outgoing { to, notification })
    }

    fn enqueue(&self, out: Box<Outgoing>, parked: &mut Option<Parked>) {
        match self.queue.try_send(out) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
            }
            Err(mpsc::error::TrySendError::Full(out)) => {
                *parked = Some(Parked {
                    out,
                    until: tokio::time::Instant::now() + SLOW_CLIENT_WAIT,
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Wait (bounded) until the client has every notification queued before `barrier`.
    async fn settle(&self, barrier: u64) {
        let mut delivered = self.delivered.clone();
        let done =
            tokio::time::timeout(SLOW_CLIENT_WAIT, delivered.wait_for(|d| *d >= barrier)).await;
        if done.is_err() {
            tracing::warn!(backend = %self.backend, "the client is slow to take notifications; answering the call anyway");
        }
    }
}

/// Hand each queued notification to its client, one after the other: rmcp's peer
/// answers only once its transport took the message, so the order holds downstream.
async fn deliver_in_order(
    backend: Arc<str>,
    mut rx: mpsc::Receiver<Box<Outgoing>>,
    delivered: watch::Sender<u64>,
) {
    while let Some(out) = rx.recv().await {
        let Outgoing { to, notification } = *out;
        match to {
            Audience::Caller(peer) => deliver(&backend, &peer, notification).await,
            Audience::Sessions(peers) => {
                for peer in &peers {
                    deliver(&backend, peer, notification.clone()).await;
                }
            }
        }
        delivered.send_modify(|d| *d += 1);
    }
}

async fn deliver(backend: &str, peer: &Peer<RoleServer>, notification: ServerNotification) {
    match tokio::time::timeout(SLOW_CLIENT_WAIT, peer.send_notification(notification)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(backend = %backend, error = %e, "notification not delivered (client gone)")
        }
        Err(_) => {
            tracing::warn!(backend = %backend, "a notification was dropped: the client did not take it in time")
        }
    }
}

/// A notification waiting for room in the queue; the upstream is not read meanwhile.
struct Parked {
    out: Box<Outgoing>,
    until: tokio::time::Instant,
}

pub struct RouteGuard {
    link: Arc<Link>,
    call: u64,
    barrier: Arc<AtomicU64>,
}

impl RouteGuard {
    /// Return once the client has every notification the upstream sent before the
    /// response (progress included), so the result cannot overtake them.
    pub async fn settle(&self) {
        self.link.settle(self.barrier.load(Ordering::Acquire)).await;
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.link.routes().retain(|_, e| e.route.call != self.call);
        lock(&self.link.askers).retain(|(call, _)| *call != self.call);
        self.link.in_flight().retain(|f| f.call != self.call);
    }
}

/// The upstream transport, wrapped: requests carrying a [`Route`] register it before
/// they are written (so no progress can come before its route), and incoming messages
/// are sorted in arrival order by [`Link::dispatch`] (rmcp would run each notification
/// handler in its own task, and hand over a response at once).
pub struct Ordered<T> {
    inner: T,
    link: Arc<Link>,
    parked: Option<Parked>,
}

impl<T> Ordered<T> {
    pub fn new(inner: T, link: Arc<Link>) -> Ordered<T> {
        Ordered {
            inner,
            link,
            parked: None,
        }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Ordered<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let JsonRpcMessage::Request(r) = &item
            && let Some(route) = r.request.extensions().get::<Route>()
            && let Some(token) = r.request.get_meta().get_progress_token()
        {
            self.link.routes().insert(
                token,
                RouteEntry {
                    upstream_id: r.id.clone(),
                    route: route.clone(),
                },
            );
        }
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            // Cancel-safe (rmcp polls this in a select): a parked notification stays
            // in `self.parked` until there is room or its time is up.
            if let Some(until) = self.parked.as_ref().map(|p| p.until) {
                let queue = self.link.queue.clone();
                let permit = tokio::time::timeout_at(until, queue.reserve()).await;
                let Some(parked) = self.parked.take() else {
                    continue;
                };
                match permit {
                    Ok(Ok(permit)) => {
                        permit.send(parked.out);
                        self.link.queued.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(Err(_)) => {}
                    Err(_) => {
                        tracing::warn!(backend = %self.link.backend, "a notification was dropped: the client is not reading")
                    }
                }
            }
            let message = self.inner.receive().await?;
            if let Some(message) = self.link.dispatch(message, &mut self.parked) {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

/// rmcp client service for one upstream connection: answers what the upstream asks.
pub struct Forwarder {
    pub link: Arc<Link>,
    pub client_info: ClientConfig,
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
        // A stateless call newest in flight asks its client (input required).
        let newest_is_stateless = self
            .link
            .in_flight()
            .last()
            .is_some_and(|f| f.session.is_none());
        if newest_is_stateless && let Some(asker) = self.link.asker() {
            return asker.ask(request, context.ct.cancelled()).await;
        }
        // Else the session whose call (most likely) caused it: the newest session
        // request in flight on this connection, on that request's own stream; else
        // a session listening to the connection.
        let asked = self
            .link
            .in_flight()
            .iter()
            .rev()
            .find_map(|f| Some((f.session.clone()?, Some(f.downstream_id.clone()))))
            .or_else(|| Some((self.link.listeners.newest()?, None)));
        let Some((peer, originating)) = asked else {
            return match self.link.asker() {
                Some(asker) => asker.ask(request, context.ct.cancelled()).await,
                None => Err(ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    "this client has no session (stateless request) and no call that can ask it: server-to-client requests are not available",
                    None,
                )),
            };
        };
        let mut request = request;
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
        _notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        // Only notifications/cancelled get here (the transport forwards the rest, in
        // order); it concerns upstream → client requests, handled via their context.
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
        *lock(&self.last_used) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        lock(&self.last_used).elapsed()
    }
}
