//! The connections to one upstream server: a session's own (restarted after a crash,
//! with backoff) and the stateless pool (at most `proxy.pool_size`, round robin, idle
//! ones closed). Connecting itself is the upstream kind's: [`stdio`] or [`http`].
//!
//! [`stdio`]: super::stdio
//! [`http`]: super::http

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::Peer;
use tokio::sync::Mutex as AsyncMutex;

use super::super::link::{Conn, Forwarder, Link};
use super::super::process::{StdioSpec, Supervisor};
use super::error::{CallError, Fault};
use super::http::HttpSpec;
use crate::config::ProxyConfig;

/// How to reach an upstream MCP server.
#[derive(Clone)]
pub enum UpstreamSpec {
    Stdio(StdioSpec),
    Http(HttpSpec),
}

pub struct Upstream {
    spec: UpstreamSpec,
    pool: AsyncMutex<Pool>,
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
}

impl Upstream {
    pub fn new(spec: UpstreamSpec) -> Upstream {
        Upstream {
            spec,
            pool: AsyncMutex::new(Pool::default()),
        }
    }

    /// `stdio` or `http` (for spans).
    pub fn kind(&self) -> &'static str {
        match self.spec {
            UpstreamSpec::Stdio(_) => "stdio",
            UpstreamSpec::Http(_) => "http",
        }
    }

    /// A new connection on `link`, introducing the edge upstream as `client_info`.
    pub async fn connect(
        &self,
        dial: &Dial<'_>,
        link: Arc<Link>,
        client_info: ClientConfig,
    ) -> Result<Conn, CallError> {
        let timeout = dial.config.spawn_timeout;
        let forwarder = Forwarder { link, client_info };
        match &self.spec {
            UpstreamSpec::Stdio(spec) => {
                super::stdio::connect(dial.backend, spec, dial.supervisor, forwarder, timeout).await
            }
            UpstreamSpec::Http(spec) => {
                super::http::connect(dial.backend, spec, forwarder, timeout).await
            }
        }
    }

    /// A session's connection from its `slot`, started (or restarted after a crash,
    /// once the backoff allows) as needed. `client` is the session's `initialize`.
    pub async fn session_conn(
        &self,
        dial: &Dial<'_>,
        slot: &mut Slot,
        peer: Peer<RoleServer>,
        label: Arc<Mutex<String>>,
        client: &ClientConfig,
    ) -> Result<Arc<Conn>, CallError> {
        let backoff_max = dial.config.restart_backoff_max;
        if let Some(conn) = &slot.conn {
            if conn.is_alive() {
                return Ok(conn.clone());
            }
            tracing::warn!(backend = %dial.backend, session = %label.lock().map(|l| l.clone()).unwrap_or_default(), "backend connection lost; restarting it");
            // A child that ran a good while before dying starts a fresh backoff.
            if conn.started.elapsed() > Duration::from_secs(60) {
                slot.backoff.succeeded();
            }
            slot.conn = None;
            slot.backoff
                .failed(backoff_max, "it exited".into(), Fault::Backend);
        }
        slot.backoff.check(dial.backend)?;
        let link = Link::new(
            dial.backend.clone(),
            dial.prefix.clone(),
            Some(peer),
            dial.config.call_timeout,
            label,
        );
        match self.connect(dial, link, client.clone()).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                slot.conn = Some(conn.clone());
                // A restart resets the backoff only once the new one proves stable.
                if slot.backoff.failures > 0 {
                    slot.backoff.retry_at = None;
                }
                Ok(conn)
            }
            Err(e) => {
                slot.backoff.failed_with(backoff_max, &e);
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
                None,
                dial.config.call_timeout,
                Arc::new(Mutex::new("stateless".into())),
            );
            match self.connect(dial, link, edge_client_info()).await {
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

    /// Keep `conn` (the start-up probe's) as the first pooled connection.
    pub async fn keep(&self, conn: Conn) {
        let mut pool = self.pool.lock().await;
        conn.touch();
        pool.conns.push(Arc::new(conn));
    }

    /// Close every pooled connection (on shutdown).
    pub async fn close_pool(&self) {
        self.pool.lock().await.conns.clear();
    }

    /// Close pooled connections that are dead, or unused for `idle` and not in use
    /// now. Returns how many were closed.
    pub async fn close_idle(&self, idle: Duration) -> usize {
        let mut pool = self.pool.lock().await;
        let before = pool.conns.len();
        pool.conns
            .retain(|c| c.is_alive() && (Arc::strong_count(c) > 1 || c.idle_for() < idle));
        before - pool.conns.len()
    }
}

/// How the edge introduces itself upstream when no client's `initialize` is at hand
/// (the probe, pooled connections).
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
