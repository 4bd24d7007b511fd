//! Start the edge: load secrets, bind, serve; shut down gracefully.
//!
//! [`start`] returns once the listener is bound and the backend is ready, with the
//! real bound address, so tests run the real server on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{ApiKeysError, Authenticator, KeyStore};
use crate::config::{AuthConfig, Config, Transport};
use crate::docs::{DocsError, DocsIndex, DocsWatcher};
use crate::mcp::{self, DocsBackend};
use crate::ratelimit::RateLimits;
use crate::server::{self, AppState};
use crate::tls::{self, TlsError};

/// Why the server could not start. Each names the file or address involved.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    ApiKeys(#[from] ApiKeysError),
    #[error("docs directory {dir}: {source}")]
    Docs {
        dir: std::path::PathBuf,
        source: DocsError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server.transport is stdio: use app::serve_stdio, not app::start")]
    NotHttp,
    #[error("stdio transport: {0}")]
    Stdio(String),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
}

/// Build the docs backend (blocking index build off the async threads) and follow changes.
pub async fn docs_backend(
    config: &Config,
) -> Result<(DocsBackend, Option<DocsWatcher>), StartError> {
    let dir = config.docs_dir.clone();
    let built = {
        let build_dir = dir.clone();
        tokio::task::spawn_blocking(move || DocsIndex::build(&build_dir))
            .await
            .map_err(|e| StartError::Docs {
                dir: dir.clone(),
                source: DocsError::Index(e.to_string()),
            })?
    };
    let index = built.map_err(|source| StartError::Docs {
        dir: dir.clone(),
        source,
    })?;
    tracing::info!(dir = %index.root().display(), documents = index.len(), "docs indexed");
    let watcher = match index.watch() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow docs changes; the index will not update");
            None
        }
    };
    Ok((DocsBackend::new(index), watcher))
}

/// A running edge server.
pub struct Running {
    addr: SocketAddr,
    tls: bool,
    dev_key: Option<SecretString>,
    dev_cert_pem: Option<String>,
    admin_addr: Option<SocketAddr>,
    redirect_addr: Option<SocketAddr>,
    state: AppState,
    handle: Handle<SocketAddr>,
    cancel: CancellationToken,
    serve: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    _watcher: Option<DocsWatcher>,
}

impl Running {
    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:<port>/mcp` (or http:// when TLS is off).
    pub fn mcp_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}/mcp", self.addr.port())
    }

    /// The API key generated for the dev profile, if any.
    pub fn dev_key(&self) -> Option<&SecretString> {
        self.dev_key.as_ref()
    }

    /// The generated dev certificate (PEM), if any, for clients to trust.
    pub fn dev_cert_pem(&self) -> Option<&str> {
        self.dev_cert_pem.as_deref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The admin listener's address (`/metrics`), when `metrics.mode = "admin"`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The plain-HTTP redirect listener's address, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// Stop accepting, let in-flight calls finish within the grace period, then close
    /// open streams and sessions. Returns when the server has stopped.
    pub async fn shutdown(self) {
        let grace = self.state.config.server.shutdown_grace;
        tracing::info!(grace = ?grace, "shutting down: draining in-flight calls");
        self.state.ready.store(false, Ordering::Release);
        self.handle.graceful_shutdown(Some(grace));
        self.state.in_flight.close();
        if tokio::time::timeout(grace, self.state.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over with calls still running; closing them");
        }
        // Closes rmcp sessions and their open SSE streams, which would otherwise
        // hold their connections until the grace period ends.
        self.cancel.cancel();
        match tokio::time::timeout(grace + Duration::from_secs(1), self.serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("connections still open after the grace period"),
        }
        for task in self.background {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

/// Bind and serve `/mcp`, `/health` and `/ready` over HTTPS (or loopback HTTP).
pub async fn start(config: Config) -> Result<Running, StartError> {
    if config.server.transport != Transport::StreamableHttp {
        return Err(StartError::NotHttp);
    }
    tls::install_crypto_provider();
    let config = Arc::new(config);

    let mut dev_key = None;
    let auth = match &config.auth {
        AuthConfig::ApiKeys {
            api_keys_file: Some(path),
        } => {
            let store = KeyStore::load_file(path)?;
            tracing::info!(file = %path.display(), keys = store.len(), principals = store.principals().len(), "API keys loaded");
            Authenticator::api_keys(store)
        }
        AuthConfig::ApiKeys {
            api_keys_file: None,
        } => {
            let key = crate::auth::generate_key();
            let store = KeyStore::single("dev", &key);
            dev_key = Some(key);
            Authenticator::api_keys(store)
        }
        AuthConfig::None => {
            tracing::warn!("authentication is OFF (auth.mode = \"none\"): only safe on loopback");
            Authenticator::None
        }
    };

    let tls_config = tls::initial_config(&config.tls, &config.server.public_hostnames)?;
    let cert = crate::certs::CertStatus::new();
    let acme = match &config.tls {
        crate::config::TlsConfig::Acme(settings) => {
            Some(crate::acme::start(settings, cert.clone())?)
        }
        _ => None,
    };
    observe_certificate(&config, tls_config.as_ref(), &cert);
    if tls_config.is_none() && acme.is_none() {
        tracing::warn!("TLS is OFF: serving plain HTTP on loopback; put a TLS proxy in front");
    }

    let (backend, watcher) = docs_backend(&config).await?;
    let cancel = CancellationToken::new();
    let parts = mcp::build(&config, backend, cancel.clone());

    let state = AppState {
        config: config.clone(),
        auth: Arc::new(auth),
        limits: Arc::new(RateLimits::new(&config.rate_limit)),
        sessions: parts.registry.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        in_flight: TaskTracker::new(),
        allowed_hosts: Arc::new(mcp::allowed_hosts(&config)),
        allowed_origins: Arc::new(mcp::allowed_origins(&config)),
        cert,
    };
    let tls_enabled = tls_config.is_some() || acme.is_some();
    let app = crate::redirect::with_hsts(
        server::router(state.clone(), parts.service),
        &config,
        tls_enabled,
    )
    .into_make_service_with_connect_info::<SocketAddr>();

    let listen = config.server.listen;
    let listener = std::net::TcpListener::bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let bind_err = |source| StartError::Bind {
        addr: listen,
        source,
    };
    listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;

    // The side listeners are bound before anything is served or spawned, so a bind
    // failure returns an error with nothing left running.
    let side_bind_err = |(addr, source)| StartError::Bind { addr, source };
    let admin = crate::admin::bind(&config).map_err(side_bind_err)?;
    let redirect = crate::redirect::bind(&config).map_err(side_bind_err)?;

    let handle = Handle::new();
    let first_request_timeout = config.server.first_request_timeout;
    let mut dev_cert_pem = None;
    let mut background = Vec::new();
    let serve = match (tls_config, acme) {
        (_, Some(acme)) => {
            let acceptor = acme.acceptor(config.server.handshake_timeout);
            background.push(acme.spawn());
            let server = axum_server::from_tcp(listener)
                .map_err(bind_err)?
                .acceptor(acceptor)
                .first_request_timeout(first_request_timeout)
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        (Some(serving), None) => {
            dev_cert_pem = serving.dev_cert_pem;
            let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(serving.config))
                .handshake_timeout(config.server.handshake_timeout)
                .acceptor(NoDelayAcceptor::new());
            let server = axum_server::from_tcp(listener)
                .map_err(bind_err)?
                .acceptor(acceptor)
                .first_request_timeout(first_request_timeout)
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        (None, None) => {
            let server = axum_server::from_tcp(listener)
                .map_err(bind_err)?
                .acceptor(NoDelayAcceptor::new())
                .first_request_timeout(first_request_timeout)
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
    };
    // `from_tcp` is already bound; this only waits for the accept loop to start.
    let _ = handle.listening().await;

    let admin_addr = admin.map(|(addr, listener)| {
        background.push(crate::admin::serve(addr, listener, &state));
        addr
    });
    let redirect_addr = redirect.map(|(addr, listener)| {
        background.push(crate::redirect::serve(
            addr,
            listener,
            &config,
            state.allowed_hosts.clone(),
        ));
        addr
    });
    {
        let registry = parts.registry.clone();
        let manager = parts.session_manager.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                mcp::sweep_sessions(&registry, &manager).await;
            }
        }));
        let limits = state.limits.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                limits.sweep();
            }
        }));
    }

    state.ready.store(true, Ordering::Release);
    tracing::info!(%addr, tls = tls_enabled, "listening");
    Ok(Running {
        addr,
        tls: tls_enabled,
        dev_key,
        dev_cert_pem,
        admin_addr,
        redirect_addr,
        state,
        handle,
        cancel,
        serve,
        background,
        _watcher: watcher,
    })
}

/// Record the expiry of a certificate known at start (files or self-signed); ACME
/// certificates are recorded by `crate::acme` as they are loaded or issued.
fn observe_certificate(
    config: &Config,
    serving: Option<&tls::ServingTls>,
    cert: &crate::certs::CertStatus,
) {
    match (&config.tls, serving) {
        (crate::config::TlsConfig::Files { cert_file, .. }, _) => {
            if let Ok(pem) = std::fs::read(cert_file) {
                cert.set_from_pem("files", &pem);
            }
        }
        (crate::config::TlsConfig::SelfSigned, Some(s)) => {
            if let Some(pem) = &s.dev_cert_pem {
                cert.set_from_pem("self-signed", pem.as_bytes());
            }
        }
        _ => {}
    }
}

/// Serve the same backend over stdin/stdout (local development; no TLS, no auth).
pub async fn serve_stdio(config: Config) -> Result<(), StartError> {
    use rmcp::ServiceExt;
    let (backend, _watcher) = docs_backend(&config).await?;
    let service = backend
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| StartError::Stdio(e.to_string()))?;
    let _ = service.waiting().await;
    Ok(())
}
