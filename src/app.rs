//! Start the edge: load secrets, bind, serve; shut down gracefully.
//!
//! [`start`] returns once the listener is bound and the backend is ready, with the
//! real bound address, so tests run the real server on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::{self, JwtKeyError};
use crate::auth::{ApiKeysError, Authenticator, JwtVerifier, KeyContext, KeyStore, RemoteJwks};
use crate::config::{AuthMode, Config, TlsConfig, Transport};
use crate::docs::{DocsError, DocsIndex};
use crate::mcp::backends::ProxyError;
use crate::mcp::{self, Backend, DocsBackend};
use crate::ratelimit::RateLimits;
use crate::reload::{Reloadable, Reloader};
use crate::server::{self, AppState};
use crate::tls::{self, TlsError};

/// Why the server could not start. Each names the file or address involved.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// What `check-config` reports too (see [`crate::preflight`]).
    #[error(transparent)]
    Preflight(#[from] crate::preflight::Problems),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    ApiKeys(#[from] ApiKeysError),
    #[error(transparent)]
    JwtKeys(#[from] JwtKeyError),
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
    Backend(#[from] ProxyError),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error(transparent)]
    Redis(#[from] crate::ratelimit::redis::RedisSetupError),
    #[error(transparent)]
    SessionKeys(#[from] crate::cluster::RingError),
    #[error(transparent)]
    Audit(#[from] crate::telemetry::audit::AuditError),
}

/// The configured backend: the built-in docs (default) and/or proxied MCP servers,
/// reached once so a wrong command or URL shows in the log at start. Also returns
/// the docs index, for the caller to keep following the directory.
pub async fn backend(config: &Config) -> Result<(Backend, Option<Arc<DocsIndex>>), StartError> {
    let (docs, index) = if Backend::needs_docs(config) {
        let (docs, index) = docs_backend(config).await?;
        (Some(docs), Some(index))
    } else {
        (None, None)
    };
    let backend = Backend::from_config(config, docs)?;
    backend.probe().await;
    Ok((backend, index))
}

/// Build the docs backend (blocking index build off the async threads).
pub async fn docs_backend(config: &Config) -> Result<(DocsBackend, Arc<DocsIndex>), StartError> {
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
    Ok((DocsBackend::new(index.clone()), index))
}

/// A running edge server.
pub struct Running {
    addr: SocketAddr,
    tls: bool,
    dev_key: Option<SecretString>,
    dev_cert_pem: Option<String>,
    admin_addr: Option<SocketAddr>,
    redirect_addr: Option<SocketAddr>,
    /// The peer listener (several replicas): its bound address and its handle.
    peer: Option<(SocketAddr, Handle<SocketAddr>)>,
    state: AppState,
    handle: Handle<SocketAddr>,
    cancel: CancellationToken,
    serve: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    acme_writes: Option<crate::acme::CacheWrites>,
    secrets: Option<Reloader>,
    backend: Backend,
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

    /// The backend behind `/mcp` (e.g. to read its live child-process count).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The secret-file watcher, if any secret files are configured.
    pub fn secrets(&self) -> Option<&Reloader> {
        self.secrets.as_ref()
    }

    /// The admin listener's address (`/metrics`), when `metrics.mode = "admin"`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The plain-HTTP redirect listener's address, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// The peer listener's bound address, when `cluster.peer_listen` is set.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().map(|(addr, _)| *addr)
    }

    /// Stop accepting, let in-flight calls finish within the grace period, then close
    /// open streams and sessions. Returns when the server has stopped.
    pub async fn shutdown(self) {
        let grace = self.state.config.server.shutdown_grace;
        tracing::info!(grace = ?grace, "shutting down: draining in-flight calls");
        self.state.ready.store(false, Ordering::Release);
        self.handle.graceful_shutdown(Some(grace));
        if let Some((_, peer)) = &self.peer {
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
        if let Some(writes) = &self.acme_writes {
            // A certificate being cached now would otherwise be ordered again next start.
            let _ = tokio::time::timeout(Duration::from_secs(10), writes.finished()).await;
        }
        self.backend.shutdown(grace).await;
        // The records of the calls just drained.
        let audit = self.state.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
        tracing::info!("stopped");
    }
}

/// Bind and serve `/mcp`, `/health` and `/ready` over HTTPS (or loopback HTTP).
pub async fn start(config: Config) -> Result<Running, StartError> {
    if config.server.transport != Transport::StreamableHttp {
        return Err(StartError::NotHttp);
    }
    tls::install_crypto_provider();
    let loaded = crate::preflight::check_to_serve(&config)?;
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
    let mut config = config;
    if listen.port() == 0 {
        // Bound to an ephemeral port (tests): derived URIs use the real one.
        config.auth.adopt_port(addr.port());
    }
    let config = Arc::new(config);

    let key_ctx = KeyContext::from_config(&config);
    let (auth, dev_key) = build_auth(&config, loaded.api_keys, loaded.jwt_keys)?;
    let auth = Arc::new(auth);
    if let Some(jwks) = RemoteJwks::new(&auth) {
        jwks.fetch_at_start().await;
    }

    let tls_config = loaded.tls;
    let cert = crate::certs::CertStatus::new();
    let acme = match &config.tls {
        crate::config::TlsConfig::Acme(settings) => {
            Some(crate::acme::start(settings, cert.clone())?)
        }
        _ => None,
    };
    observe_certificate(&config, tls_config.as_ref(), &cert);
    let tls_enabled = tls_config.is_some() || acme.is_some();
    if !tls_enabled {
        tracing::warn!("TLS is OFF: serving plain HTTP on loopback; put a TLS proxy in front");
    }

    let (cluster, peer_listener) = cluster(&config, loaded.ring)?;
    let (backend, docs) = backend(&config).await?;
    let cancel = CancellationToken::new();
    let parts = mcp::build(&config, backend.clone(), cancel.clone());
    let legacy = config.legacy_sse.then(|| {
        tracing::info!("legacy HTTP+SSE transport enabled at /sse and /messages");
        server::legacy_sse::LegacySse::new(
            backend.clone(),
            parts.registry.clone(),
            cancel.clone(),
            config.server.max_body_bytes,
            cluster.clone(),
        )
    });
    let peer_routes = {
        let routes = axum::Router::new().nest_service("/mcp", parts.service.clone());
        match &legacy {
            Some(l) => routes.merge(server::legacy_sse::router(l.clone())),
            None => routes,
        }
    };
    let legacy = legacy.map(server::legacy_sse::router);

    // Shared limiter and session-cap state; connects lazily, so a replica starts
    // (on its fallback) while Redis is still coming up.
    let redis = match &config.redis {
        Some(settings) => Some(crate::ratelimit::redis::RedisStore::connect(settings)?),
        None => None,
    };
    if let Some(redis) = &redis {
        parts
            .registry
            .share_caps(redis.clone(), config.sessions.idle_timeout);
    }
    let state = server::app_state(server::StateParts {
        config: config.clone(),
        auth: auth.clone(),
        limits: Arc::new(RateLimits::with_store(&config.rate_limit, redis.clone())),
        sessions: parts.registry.clone(),
        cert,
        cluster: cluster.clone(),
        audit: Arc::new(crate::telemetry::audit::Audit::start(&config.audit)?),
    });
    let app = crate::redirect::with_hsts(
        server::router_with(state.clone(), parts.service.clone(), legacy),
        &config,
        tls_enabled,
    )
    .into_make_service_with_connect_info::<SocketAddr>();

    // The side listeners are bound before anything is served or spawned, so a bind
    // failure returns an error with nothing left running.
    let side_bind_err = |(addr, source)| StartError::Bind { addr, source };
    let admin = crate::server::admin::bind(&config).map_err(side_bind_err)?;
    let redirect = crate::redirect::bind(&config).map_err(side_bind_err)?;

    let handle = Handle::new();
    let first_request_timeout = config.server.first_request_timeout;
    let mut dev_cert_pem = None;
    let mut rustls_config = None;
    let mut background = Vec::new();
    let mut acme_writes = None;
    // One acceptor chain for every TLS mode: caps → PROXY header → TLS → timeouts.
    let tls_mode = match (tls_config, acme) {
        (_, Some(acme)) => {
            let acceptor = acme.acceptor(config.server.handshake_timeout);
            acme_writes = Some(acme.writes());
            background.push(acme.spawn());
            crate::conn::TlsMode::Acme(acceptor)
        }
        (Some(serving), None) => {
            dev_cert_pem = serving.dev_cert_pem;
            let rustls = RustlsConfig::from_config(serving.config);
            rustls_config = Some(rustls.clone());
            crate::conn::TlsMode::Files(rustls)
        }
        (None, None) => crate::conn::TlsMode::Plain,
    };
    let mut server = axum_server::from_tcp(listener)
        .map_err(bind_err)?
        .acceptor(crate::conn::EdgeAcceptor::new(&config.server, tls_mode))
        .first_request_timeout(first_request_timeout)
        .handle(handle.clone());
    crate::conn::tune(server.http_builder(), &config.server.connections);
    let serve = tokio::spawn(server.serve(app));
    // `from_tcp` is already bound; this only waits for the accept loop to start.
    let _ = handle.listening().await;

    let peer = match peer_listener {
        Some((peer_addr, listener)) => {
            let peer_handle = Handle::new();
            let app = server::peer_router(state.clone(), peer_routes);
            background.push(
                crate::cluster::peer::serve(listener, app, peer_handle.clone()).map_err(
                    |source| StartError::Bind {
                        addr: peer_addr,
                        source,
                    },
                )?,
            );
            tracing::info!(%peer_addr, advertise = cluster.advertise().unwrap_or_default(), "peer listener up");
            Some((peer_addr, peer_handle))
        }
        None => None,
    };
    background.extend(mcp::backends::process::start_pid1_reaper());
    let admin_addr = admin.map(|(addr, listener)| {
        background.push(crate::server::admin::serve(addr, listener, &state));
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

    let secrets = secret_files(
        &config,
        &key_ctx,
        &auth,
        &parts,
        rustls_config,
        &state,
        docs,
    );
    let secrets =
        (!secrets.is_empty()).then(|| Reloader::spawn(secrets, config.secrets_poll_interval));

    state.ready.store(true, Ordering::Release);
    tracing::info!(%addr, tls = tls_enabled, "listening");
    Ok(Running {
        addr,
        tls: tls_enabled,
        dev_key,
        dev_cert_pem,
        admin_addr,
        redirect_addr,
        peer,
        state,
        handle,
        cancel,
        serve,
        background,
        acme_writes,
        secrets,
        backend,
    })
}

fn build_auth(
    config: &Config,
    api_keys: Option<KeyStore>,
    jwt_keys: Option<jwt::KeySet>,
) -> Result<(Authenticator, Option<SecretString>), StartError> {
    let mode = config.auth.mode;
    if mode == AuthMode::None {
        tracing::warn!("authentication is OFF (auth.mode = \"none\"): only safe on loopback");
        return Ok((Authenticator::none(), None));
    }
    let mut dev_key = None;
    let api_keys = if mode.api_keys() {
        Some(match (&config.auth.api_keys_file, api_keys) {
            (Some(path), loaded) => {
                let store = match loaded {
                    Some(store) => store,
                    None => KeyStore::load_file(path, &KeyContext::from_config(config))?,
                };
                tracing::info!(file = %path.display(), keys = store.len(), principals = store.principals().len(), "API keys loaded");
                store
            }
            (None, _) => {
                let key = crate::auth::generate_key();
                let store = KeyStore::single("dev", &key);
                dev_key = Some(key);
                store
            }
        })
    } else {
        None
    };
    let jwt = match &config.auth.jwt {
        Some(jwt_config) => {
            let local = match jwt_keys {
                Some(keys) => keys,
                None => jwt::load_local_keys(jwt_config)?,
            };
            tracing::info!(keys = local.len(), issuer = %jwt_config.issuer, "JWT verification keys loaded");
            Some(JwtVerifier::new(
                jwt_config.clone(),
                local,
                config.rate_limit.tiers.clone(),
            )?)
        }
        None => None,
    };
    Ok((Authenticator::new(api_keys, jwt), dev_key))
}

/// Everything reloaded while the edge runs, each with the component that validates
/// and publishes it (see [`crate::reload::Reload`]).
fn secret_files(
    config: &Arc<Config>,
    key_ctx: &KeyContext,
    auth: &Arc<Authenticator>,
    parts: &mcp::McpParts,
    rustls: Option<RustlsConfig>,
    state: &AppState,
    docs: Option<Arc<DocsIndex>>,
) -> Vec<Reloadable> {
    let mut secrets: Vec<Reloadable> = Vec::new();
    if config.auth.mode.api_keys()
        && let Some(path) = &config.auth.api_keys_file
    {
        secrets.push(Arc::new(mcp::ApiKeysFile {
            path: path.clone(),
            ctx: key_ctx.clone(),
            auth: auth.clone(),
            registry: parts.registry.clone(),
            manager: parts.session_manager.clone(),
        }));
    }
    if let Some(jwt_config) = &config.auth.jwt
        && !jwt::local_key_files(jwt_config).is_empty()
    {
        secrets.push(Arc::new(crate::auth::JwtKeyFiles {
            config: jwt_config.clone(),
            auth: auth.clone(),
        }));
    }
    if let Some(jwks) = RemoteJwks::new(auth) {
        secrets.push(Arc::new(jwks));
    }
    if let (
        TlsConfig::Files {
            cert_file,
            key_file,
        },
        Some(rustls),
    ) = (&config.tls, rustls)
    {
        secrets.push(Arc::new(tls::CertFiles {
            cert: cert_file.clone(),
            key: key_file.clone(),
            rustls,
            status: state.cert.clone(),
        }));
    }
    if let Some(path) = &config.cluster.key_ring_file {
        secrets.push(Arc::new(crate::cluster::RingFile {
            path: path.clone(),
            cluster: state.cluster.clone(),
        }));
    }
    // Last: a forced rescan of the docs is the slowest.
    if let Some(index) = docs {
        secrets.push(Arc::new(crate::docs::IndexReload::new(index)));
    }
    secrets
}

/// The session key ring and, with `cluster.peer_listen`, the bound peer listener and
/// the address this replica advertises (the bound one unless configured).
#[allow(clippy::type_complexity)]
fn cluster(
    config: &Config,
    ring: crate::cluster::KeyRing,
) -> Result<
    (
        Arc<crate::cluster::Cluster>,
        Option<(SocketAddr, std::net::TcpListener)>,
    ),
    StartError,
> {
    if let Some(path) = &config.cluster.key_ring_file {
        tracing::info!(file = %path.display(), keys = ring.len(), "session key ring loaded");
    }
    let ttl = config.sessions.id_ttl;
    let Some(listen) = config.cluster.peer_listen else {
        return Ok((crate::cluster::Cluster::new(ring, None, ttl), None));
    };
    let (addr, listener) =
        crate::cluster::peer::bind(listen).map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let advertise = config
        .cluster
        .advertise
        .clone()
        .unwrap_or_else(|| addr.to_string());
    Ok((
        crate::cluster::Cluster::new(ring, Some(advertise), ttl),
        Some((addr, listener)),
    ))
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
    let (backend, docs) = backend(&config).await?;
    // No reloader over stdio (nothing else to reload, and SIGHUP keeps its default).
    let _watcher = docs.and_then(|index| {
        index
            .watch()
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot follow docs changes; the index will not update")
            })
            .ok()
    });
    let _reaper = mcp::backends::process::start_pid1_reaper();
    let service = backend
        .instance()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| StartError::Stdio(e.to_string()))?;
    let _ = service.waiting().await;
    backend.shutdown(config.proxy.kill_grace * 2).await;
    Ok(())
}
