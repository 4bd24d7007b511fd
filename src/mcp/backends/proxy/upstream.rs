//! The connections to one upstream server: a session's own (restarted after a crash,
//! with backoff), each principal's own for its stateless requests (`share = "none"`,
//! the default), or one pool for everybody's (`share = "all"`: at most
//! `proxy.pool_size`, round robin). Idle ones are closed. Connecting itself is the
//! upstream kind's: [`stdio`] or [`http`].
//!
//! [`stdio`]: super::stdio
//! [`http`]: super::http

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::Peer;
use tokio::sync::Mutex as AsyncMutex;

use super::super::credentials::{
    ClientCredentials, CredentialSpec, Credentials, Fingerprint, StartFor,
};
use super::super::link::{Conn, Forwarder, Link, Listeners, Listening};
use super::super::process::{StdioSpec, Supervisor};
use super::error::{CallError, Fault};
use super::http::HttpSpec;
use crate::config::{ProxyConfig, Share};
use crate::sync::lock;

/// How to reach an upstream MCP server.
#[derive(Clone)]
pub enum UpstreamSpec {
    Stdio(StdioSpec),
    Http(HttpSpec),
}

pub struct Upstream {
    spec: UpstreamSpec,
    share: Share,
    /// `[backends.credentials]`: resolved for the principal each connection is
    /// started for (a session's, or a principal's own).
    credentials: Option<CredentialSpec>,
    /// `share = "all"`: everybody's stateless requests.
    pool: AsyncMutex<Pool>,
    /// `share = "none"`: each principal's stateless requests, on that principal's own
    /// connection. The outer lock is held only to look an entry up, never across an
    /// await; the entry's own lock serialises starting its connection.
    tenants: Mutex<HashMap<Arc<str>, Arc<AsyncMutex<Tenant>>>>,
}

/// One principal's connection and its restart backoff.
#[derive(Default)]
struct Tenant {
    slot: Slot,
    /// The principal's sessions served by this connection (`share = "principal"`).
    /// Kept across restarts of the child; while any is attached the entry stays.
    listeners: Listeners,
    /// Taken out of the map (evicted or reaped): a request that was waiting for this
    /// entry looks the principal up again.
    gone: bool,
}

/// A principal's idle connection that may be stopped to make room (see
/// [`Upstream::least_recently_used`]).
pub struct Idle {
    pub principal: Arc<str>,
    pub idle_for: Duration,
}

#[derive(Default)]
struct Pool {
    conns: Vec<Arc<Conn>>,
    next: usize,
    backoff: Backoff,
}

/// A session's connection to one member (none yet, or lost), and its restart backoff.
#[derive(Default)]
pub struct Slot {
    conn: Option<Arc<Conn>>,
    backoff: Backoff,
    /// The header-supplied credentials `conn` was started with.
    started_with: Fingerprint,
}

impl Slot {
    pub fn conn(&self) -> Option<&Arc<Conn>> {
        self.conn.as_ref()
    }
}

/// Restarts after failures wait 200 ms, doubling, capped by `proxy.restart_backoff_max`.
#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
    last_fault: Fault,
}

impl Backoff {
    fn check(&self, backend: &Arc<str>) -> Result<(), CallError> {
        match self.retry_at {
            Some(at) if Instant::now() < at => Err(CallError::Restarting {
                backend: backend.clone(),
                last: self.last_error.clone(),
                fault: self.last_fault,
                in_ms: (at - Instant::now()).as_millis(),
            }),
            _ => Ok(()),
        }
    }

    fn failed(&mut self, max: Duration, error: String, fault: Fault) {
        self.failures = self.failures.saturating_add(1);
        let step = Duration::from_millis(100).saturating_mul(1 << self.failures.min(16));
        self.retry_at = Some(Instant::now() + step.min(max));
        self.last_error = error;
        self.last_fault = fault;
    }

    fn failed_with(&mut self, max: Duration, e: &CallError) {
        self.failed(max, e.to_string(), e.fault());
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// What connecting to a member needs besides the upstream itself.
pub struct Dial<'a> {
    pub backend: &'a Arc<str>,
    /// The member's namespace prefix (for resource URIs in notifications).
    pub prefix: Option<String>,
    pub config: &'a ProxyConfig,
    pub supervisor: &'a Supervisor,
    /// Stateless calls can pass the backend's questions to their clients.
    pub asks: bool,
}

impl Upstream {
    pub fn new(spec: UpstreamSpec, share: Share, credentials: Option<CredentialSpec>) -> Upstream {
        Upstream {
            spec,
            share,
            credentials,
            pool: AsyncMutex::new(Pool::default()),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    pub fn share(&self) -> Share {
        self.share
    }

    /// Its children need a principal's credentials (so none is started without one).
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// `conn`, started with `started`, can serve `who`'s request as it is (no
    /// credential header with another value, none required missing).
    fn fits(&self, started: &Fingerprint, who: StartFor<'_>) -> bool {
        self.credentials
            .as_ref()
            .is_none_or(|c| !c.needs_new(started, who))
    }

    /// `who`'s credentials for a new connection (none when the backend has none).
    fn credentials_for(
        &self,
        dial: &Dial<'_>,
        who: StartFor<'_>,
    ) -> Result<Credentials, CallError> {
        match &self.credentials {
            None => Ok(Credentials::default()),
            Some(spec) => spec.resolve(who).map_err(|source| CallError::Credentials {
                backend: dial.backend.clone(),
                source,
            }),
        }
    }

    /// `stdio` or `http` (for spans).
    pub fn kind(&self) -> &'static str {
        match self.spec {
            UpstreamSpec::Stdio(_) => "stdio",
            UpstreamSpec::Http(_) => "http",
        }
    }

    /// A new connection on `link`, introducing the edge upstream as `client_info`,
    /// with a principal's `credentials` (environment of a stdio child, headers to an
    /// HTTP upstream).
    pub async fn connect(
        &self,
        dial: &Dial<'_>,
        link: Arc<Link>,
        client_info: ClientConfig,
        credentials: &Credentials,
        principal: &str,
    ) -> Result<Conn, CallError> {
        let timeout = dial.config.spawn_timeout;
        let forwarder = Forwarder { link, client_info };
        match &self.spec {
            UpstreamSpec::Stdio(spec) => {
                super::stdio::connect(
                    dial.backend,
                    principal,
                    spec,
                    credentials,
                    dial.supervisor,
                    forwarder,
                    timeout,
                )
                .await
            }
            UpstreamSpec::Http(spec) => {
                let headers = match &self.credentials {
                    None => Vec::new(),
                    Some(c) => c
                        .upstream_headers(credentials, principal)
                        .map_err(|source| CallError::Credentials {
                            backend: dial.backend.clone(),
                            source,
                        })?,
                };
                super::http::connect(dial.backend, spec, headers, forwarder, timeout).await
            }
        }
    }

    /// The connection in `slot` (a session's, or a principal's), started (or restarted
    /// after a crash, once the backoff allows) as needed, with the credentials of
    /// `who` (the principal it is for). `client` is the session's `initialize` (the
    /// edge's own for a principal's); `listeners` the sessions its notifications go
    /// to (none for stateless calls: only progress reaches them).
    pub async fn slot_conn(
        &self,
        dial: &Dial<'_>,
        slot: &mut Slot,
        listeners: Listeners,
        label: Arc<Mutex<String>>,
        client: &ClientConfig,
        who: StartFor<'_>,
    ) -> Result<Arc<Conn>, CallError> {
        let backoff_max = dial.config.restart_backoff_max;
        let mut replacing = false;
        if let Some(conn) = &slot.conn {
            if conn.is_alive() {
                if self.fits(&slot.started_with, who) {
                    return Ok(conn.clone());
                }
                // Not a failure: no backoff; the old one is stopped once a new one can start.
                replacing = true;
            } else {
                tracing::warn!(backend = %dial.backend, session = %label.lock().map(|l| l.clone()).unwrap_or_default(), "backend connection lost; restarting it");
                // A child that ran a good while before dying starts a fresh backoff.
                if conn.started.elapsed() > Duration::from_secs(60) {
                    slot.backoff.succeeded();
                }
                slot.conn = None;
                slot.backoff
                    .failed(backoff_max, "it exited".into(), Fault::Backend);
            }
        }
        slot.backoff.check(dial.backend)?;
        // Resolved before anything is stopped or started: a principal without its
        // credential gets the error, and no child is started without it.
        let credentials = self.credentials_for(dial, who)?;
        if replacing {
            // Calls in flight hold their own `Arc<Conn>` and finish on the old child.
            tracing::info!(backend = %dial.backend, session = %label.lock().map(|l| l.clone()).unwrap_or_default(), "the principal's credential header changed; starting a new backend process with it");
            slot.conn = None;
        }
        let link = Link::new(
            dial.backend.clone(),
            dial.prefix.clone(),
            listeners,
            dial.config.call_timeout,
            label,
        );
        match self
            .connect(dial, link, client.clone(), &credentials, who.principal)
            .await
        {
            Ok(conn) => {
                let conn = Arc::new(conn);
                slot.conn = Some(conn.clone());
                slot.started_with = credentials.fingerprint;
                // A restart resets the backoff only once the new one proves stable.
                if slot.backoff.failures > 0 {
                    slot.backoff.retry_at = None;
                }
                Ok(conn)
            }
            Err(e) => {
                // The edge's own cap is no fault of the backend's: no restart backoff.
                if !e.is_at_child_cap() {
                    slot.backoff.failed_with(backoff_max, &e);
                }
                Err(e)
            }
        }
    }

    /// A pooled connection for a stateless request: a new one while the pool is below
    /// `proxy.pool_size` (and no restart is backing off), else the next in turn.
    pub async fn pooled_conn(&self, dial: &Dial<'_>) -> Result<Arc<Conn>, CallError> {
        let backoff_max = dial.config.restart_backoff_max;
        let mut pool = self.pool.lock().await;
        pool.conns.retain(|c| c.is_alive());
        // Grow up to pool_size; while a restart backs off, use the ones still alive.
        let may_grow = match pool.backoff.check(dial.backend) {
            Ok(()) => true,
            Err(e) if pool.conns.is_empty() => return Err(e),
            Err(_) => false,
        };
        if pool.conns.len() < dial.config.pool_size && may_grow {
            let link = Link::new(
                dial.backend.clone(),
                dial.prefix.clone(),
                Listeners::default(),
                dial.config.call_timeout,
                Arc::new(Mutex::new("stateless".into())),
            );
            // `share = "all"` has no per-principal credentials (refused by the config).
            let none = Credentials::default();
            match self
                .connect(dial, link, stateless_client_info(dial.asks), &none, "")
                .await
            {
                Ok(conn) => {
                    pool.backoff.succeeded();
                    let conn = Arc::new(conn);
                    pool.conns.push(conn.clone());
                    return Ok(conn);
                }
                Err(e) => {
                    pool.backoff.failed_with(backoff_max, &e);
                    if pool.conns.is_empty() {
                        return Err(e);
                    }
                }
            }
        }
        pool.next = pool.next.wrapping_add(1);
        let i = pool.next % pool.conns.len();
        Ok(pool.conns[i].clone())
    }

    /// `principal`'s own connection, started as needed: for its stateless requests,
    /// and with `share = "principal"` for its sessions too. It serves nobody else: no
    /// state, output or notification of one principal's child reaches another
    /// principal. A session passes `attach` (its client) the first time, to hear the
    /// connection's notifications while the returned guard lives; `init` is what
    /// the child is told about its client when this call starts it (the edge's own
    /// when `None`); `creds` the credentials the request brought in a header.
    pub async fn principal_conn(
        &self,
        dial: &Dial<'_>,
        principal: &Arc<str>,
        init: Option<&ClientConfig>,
        creds: Option<&ClientCredentials>,
        attach: Option<Peer<RoleServer>>,
    ) -> Result<(Arc<Conn>, Option<Listening>), CallError> {
        let who = StartFor {
            principal,
            client: creds,
        };
        loop {
            let tenant = lock(&self.tenants)
                .entry(principal.clone())
                .or_default()
                .clone();
            let mut tenant = tenant.lock().await;
            if tenant.gone {
                continue;
            }
            // The common case, on every call: the child is there (nothing to build,
            // no credential file read).
            let live = tenant
                .slot
                .conn()
                .filter(|c| c.is_alive() && self.fits(&tenant.slot.started_with, who))
                .cloned();
            let conn = match live {
                Some(conn) => conn,
                None => {
                    let label = Arc::new(Mutex::new(format!("principal {principal}")));
                    let listeners = tenant.listeners.clone();
                    let init = init
                        .cloned()
                        .unwrap_or_else(|| stateless_client_info(dial.asks));
                    self.slot_conn(dial, &mut tenant.slot, listeners, label, &init, who)
                        .await?
                }
            };
            conn.touch();
            // Attached under the entry's lock: the entry cannot be taken out meanwhile.
            let listening = attach.map(|peer| tenant.listeners.attach(peer));
            return Ok((conn, listening));
        }
    }

    /// The principal whose connection has gone unused longest and has no request in
    /// flight (a candidate to stop when `proxy.max_children` is reached).
    pub fn least_recently_used(&self) -> Option<Idle> {
        let tenants = lock(&self.tenants);
        tenants
            .iter()
            .filter_map(|(principal, tenant)| {
                let tenant = tenant.try_lock().ok()?;
                let conn = tenant.slot.conn.as_ref()?;
                // A child serving live sessions is theirs, like a session's own child.
                (Arc::strong_count(conn) == 1 && tenant.listeners.is_empty()).then(|| Idle {
                    principal: principal.clone(),
                    idle_for: conn.idle_for(),
                })
            })
            .max_by_key(|idle| idle.idle_for)
    }

    /// Stop `principal`'s connection if it is still idle (no request in flight, and
    /// nobody starting or using it now). Returns it, to wait for its child's exit.
    pub fn evict(&self, principal: &str) -> Option<Arc<Conn>> {
        let mut tenants = lock(&self.tenants);
        let tenant = tenants.get(principal)?.clone();
        let mut tenant = tenant.try_lock().ok()?;
        if !tenant.listeners.is_empty()
            || tenant
                .slot
                .conn
                .as_ref()
                .is_some_and(|c| Arc::strong_count(c) > 1)
        {
            return None;
        }
        tenant.gone = true;
        tenants.remove(principal);
        tenant.slot.conn.take()
    }

    /// Keep `conn` (the start-up probe's) as the first pooled connection of a
    /// `share = "all"` backend; any other closes it (it would serve nobody).
    pub async fn keep(&self, conn: Conn) {
        if self.share != Share::All {
            return;
        }
        let mut pool = self.pool.lock().await;
        conn.touch();
        pool.conns.push(Arc::new(conn));
    }

    /// Close every pooled and per-principal connection (on shutdown).
    pub async fn close_pool(&self) {
        self.pool.lock().await.conns.clear();
        let tenants: Vec<_> = lock(&self.tenants).drain().map(|(_, t)| t).collect();
        for tenant in tenants {
            let mut tenant = tenant.lock().await;
            tenant.gone = true;
            tenant.slot.conn = None;
        }
    }

    /// Close pooled and per-principal connections that are dead, or unused for `idle`
    /// and not in use now. Returns how many were closed.
    pub async fn close_idle(&self, idle: Duration) -> usize {
        let closable =
            |c: &Arc<Conn>| !c.is_alive() || (Arc::strong_count(c) == 1 && c.idle_for() >= idle);
        let mut pool = self.pool.lock().await;
        let before = pool.conns.len();
        pool.conns.retain(|c| !closable(c));
        let mut closed = before - pool.conns.len();
        drop(pool);
        let mut tenants = lock(&self.tenants);
        tenants.retain(|_, tenant| {
            // One being started or used now (locked) is not idle.
            let Ok(mut tenant) = tenant.try_lock() else {
                return true;
            };
            // Sessions still served by it keep it (their idle timeout ends them).
            if !tenant.listeners.is_empty() {
                return true;
            }
            // A principal whose child exited keeps its entry while the restart
            // backs off, so a crashing server is not restarted at once.
            let remove = match &tenant.slot.conn {
                Some(c) => Arc::strong_count(c) == 1 && c.idle_for() >= idle,
                None => tenant
                    .slot
                    .backoff
                    .retry_at
                    .is_none_or(|at| Instant::now() >= at),
            };
            if remove {
                closed += usize::from(tenant.slot.conn.is_some());
                tenant.gone = true;
                tenant.slot.conn = None;
            }
            !remove
        });
        closed
    }

    /// Principals with a connection of their own now (for tests and status).
    pub fn principals(&self) -> Vec<Arc<str>> {
        let tenants = lock(&self.tenants);
        tenants
            .iter()
            .filter(|(_, t)| t.try_lock().map_or(true, |t| t.slot.conn.is_some()))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// How the edge introduces itself upstream when no client's `initialize` is at hand
/// (the probe, pooled connections).
/// The edge as the client of a stateless connection: when its callers can be asked
/// (input-required rounds), it says it can take the backend's questions, so a
/// backend that checks its client's capabilities asks them.
pub fn stateless_client_info(asks: bool) -> ClientConfig {
    let mut c = edge_client_info();
    if asks {
        c.capabilities = ClientCapabilities::builder()
            .enable_roots()
            .enable_sampling()
            .enable_elicitation()
            .build();
    }
    c
}

pub fn edge_client_info() -> ClientConfig {
    let mut c = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")),
    );
    // The newest version that still has an initialize handshake: the widest
    // support among stdio/HTTP servers in the field.
    c.protocol_version = rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE;
    c
}
