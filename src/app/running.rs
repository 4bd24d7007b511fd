//! What `app::start` returns: the bound listeners, the background work, and the
//! graceful shutdown that stops them in order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum_server::Handle;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::mcp::Backend;
use crate::reload::Reloader;
use crate::server::AppState;

/// A running edge server.
pub struct Running {
    /// The status page's sources, when it is on.
    pub(super) status: Option<std::sync::Arc<crate::status::Status>>,
    pub(super) listeners: Listeners,
    pub(super) dev: DevCredentials,
    pub(super) state: AppState,
    pub(super) backend: Backend,
    pub(super) background: Background,
}

/// The bound listeners and the tasks serving them.
pub(super) struct Listeners {
    /// The main (HTTPS, or loopback HTTP) listener.
    pub(super) addr: SocketAddr,
    pub(super) tls: bool,
    pub(super) handle: Handle<SocketAddr>,
    pub(super) serve: JoinHandle<std::io::Result<()>>,
    pub(super) admin: Option<SocketAddr>,
    pub(super) redirect: Option<SocketAddr>,
    /// The peer listener (several replicas): its bound address and its handle.
    pub(super) peer: Option<(SocketAddr, Handle<SocketAddr>)>,
}

/// What the dev profile generated, for local clients.
pub(super) struct DevCredentials {
    pub(super) key: Option<SecretString>,
    pub(super) cert_pem: Option<String>,
}

/// The work that runs beside the listeners, each task owned by its component
/// (ACME, the side listeners, sweeps, reloads); stopped at shutdown.
pub(super) struct Background {
    /// Closes rmcp sessions and their open streams.
    pub(super) cancel: CancellationToken,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) acme_writes: Option<crate::acme::CacheWrites>,
    pub(super) reloads: Option<Reloader>,
}

impl Running {
    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.listeners.addr
    }

    /// `https://localhost:<port>/mcp` (or http:// when TLS is off).
    pub fn mcp_url(&self) -> String {
        let scheme = if self.listeners.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}/mcp", self.listeners.addr.port())
    }

    /// The API key generated for the dev profile, if any.
    pub fn dev_key(&self) -> Option<&SecretString> {
        self.dev.key.as_ref()
    }

    /// The generated dev certificate (PEM), if any, for clients to trust.
    pub fn dev_cert_pem(&self) -> Option<&str> {
        self.dev.cert_pem.as_deref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The backend behind `/mcp` (e.g. to read its live child-process count).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// What reloads secrets, JWKS and the docs index, if anything is reloadable.
    pub fn secrets(&self) -> Option<&Reloader> {
        self.background.reloads.as_ref()
    }

    /// The admin listener's address (`/metrics`), when `metrics.mode = "admin"`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.listeners.admin
    }

    /// The status page's sources (`/status` on the admin listener), when it is on.
    pub fn status(&self) -> Option<&crate::status::Status> {
        self.status.as_deref()
    }

    /// The plain-HTTP redirect listener's address, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.listeners.redirect
    }

    /// The peer listener's bound address, when `cluster.peer_listen` is set.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.listeners.peer.as_ref().map(|(addr, _)| *addr)
    }

    /// Stop accepting, let in-flight calls finish within the grace period, then close
    /// open streams and sessions. Returns when the server has stopped.
    pub async fn shutdown(self) {
        let grace = self.state.config.server.shutdown_grace;
        tracing::info!(grace = ?grace, "shutting down: draining in-flight calls");
        self.state.ready.store(false, Ordering::Release);
        self.listeners.handle.graceful_shutdown(Some(grace));
        if let Some((_, peer)) = &self.listeners.peer {
            peer.graceful_shutdown(Some(grace));
        }
        self.state.in_flight.close();
        if tokio::time::timeout(grace, self.state.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over with calls still running; closing them");
        }
        // Closes rmcp sessions and their open SSE streams, which would otherwise
        // hold their connections until the grace period ends.
        self.background.cancel.cancel();
        match tokio::time::timeout(grace + Duration::from_secs(1), self.listeners.serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("connections still open after the grace period"),
        }
        self.background.stop().await;
        self.backend.shutdown(grace).await;
        // The records of the calls just drained.
        let audit = self.state.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
        tracing::info!("stopped");
    }
}

impl Background {
    pub(super) fn new() -> Background {
        Background {
            cancel: CancellationToken::new(),
            tasks: Vec::new(),
            acme_writes: None,
            reloads: None,
        }
    }

    async fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
        if let Some(writes) = &self.acme_writes {
            // A certificate being cached now would otherwise be ordered again next start.
            let _ = tokio::time::timeout(Duration::from_secs(10), writes.finished()).await;
        }
    }
}
