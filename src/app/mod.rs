//! Start the edge: load secrets, bind, serve; shut down gracefully.
//!
//! [`start`] returns once the listener is bound and the backend is ready, with the
//! real bound address, so tests run the real server on port 0.

mod running;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use secrecy::SecretString;
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

pub use running::Running;
use running::{Background, DevCredentials, Listeners};

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
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthSetupError),
}

/// The configured backend: the built-in docs (default) and/or proxied MCP servers,
/// reached once so a wrong command or URL shows in the log at start. Also returns
/// the docs index, for the caller to keep following the directory. With `sealer` (the
/// cluster), stateless clients can answer the backends' questions.
pub async fn backend(
    config: &Config,
    sealer: Option<Arc<dyn crate::mcp::backends::request_state::Sealer>>,
) -> Result<(Backend, Option<Arc<DocsIndex>>), StartError> {
    let (docs, index) = if Backend::needs_docs(config) {
        let (docs, index) = docs_backend(config).await?;
        (Some(docs), Some(index))
    } else {
        (None, None)
    };
    let backend = Backend::from_config(config, docs)?;
    if let Some(sealer) = sealer {
        backend.set_sealer(sealer);
    }
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

/// Bind and serve `/mcp`, `/health` and `/ready` over HTTPS (or loopback HTTP).
/// Components start in order; every listener is bound before anything is served,
/// so a bind failure returns an error with nothing left running.
pub async fn start(config: Config) -> Result<Running, StartError> {
    if config.server.transport != Transport::StreamableHttp {
        return Err(StartError::NotHttp);
    }
    tls::install_crypto_provider();
    let loaded = crate::preflight::check_to_serve(&config)?;
    let (listener, config) = bind_main(config)?;
    let edge_tokens = loaded.oauth_keys.map(|keys| {
        let issuer = config.auth.oauth.as_ref().map(|o| o.issuer.clone());
        crate::auth::EdgeTokens::new(issuer.unwrap_or_default(), keys)
    });
    let (auth, dev_key) = start_auth(
        &config,
        loaded.api_keys,
        loaded.jwt_keys,
        edge_tokens.clone(),
    )
    .await?;
    let tls = Tls::start(&config, loaded.tls)?;
    let (cluster, peer_listener) = cluster(&config, loaded.ring)?;
    let (backend, docs) = backend(&config, Some(cluster.clone())).await?;
    let mut background = Background::new();
    let routes = McpRoutes::build(&config, &backend, &cluster, &background.cancel);
    let refusals = config
        .status_page
        .is_some()
        .then(crate::status::Refusals::new);
    let (state, redis) = shared_state(
        &config,
        auth,
        &routes.parts,
        tls.cert.clone(),
        cluster,
        edge_tokens,
        refusals,
    )?;
    let status = status_page(&state, redis, loaded.status_token);
    let side = SideListeners::bind(&config)?;

    let (mut listeners, dev_cert_pem, rustls) =
        serve_main(listener, &state, &routes, tls, &mut background).await?;
    listeners.peer = serve_peer(peer_listener, &state, routes.peer, &mut background)?;
    background
        .tasks
        .extend(mcp::backends::process::start_pid1_reaper());
    (listeners.admin, listeners.redirect) = side.serve(&state, status.clone(), &mut background);
    if let Some(status) = &status {
        status.history.sample();
        background.tasks.push(status.history.spawn());
    }
    background.tasks.push(routes.parts.spawn_session_sweeps());
    background.tasks.push(state.limits.spawn_sweeps());
    if let Some(oauth) = &state.oauth {
        background.tasks.extend(oauth.follow_revocations());
    }
    let mut reloadables = reloadables(&state, &routes.parts, rustls, docs);
    if let Some(token) = status.as_ref().and_then(|s| s.token.clone()) {
        reloadables.push(Arc::new(crate::status::token::TokenFile(token)));
    }
    background.reloads = (!reloadables.is_empty())
        .then(|| Reloader::spawn(reloadables, config.secrets_poll_interval));
    if let Some(status) = &status {
        let _ = status.reloads.set(
            background
                .reloads
                .as_ref()
                .map(Reloader::all)
                .unwrap_or_default(),
        );
    }

    state.ready.store(true, Ordering::Release);
    tracing::info!(addr = %listeners.addr, tls = listeners.tls, "listening");
    Ok(Running {
        status,
        listeners,
        dev: DevCredentials {
            key: dev_key,
            cert_pem: dev_cert_pem,
        },
        state,
        backend,
        background,
    })
}

/// Bind the main listener; on an ephemeral port (tests), URIs derived from the
/// configuration use the real port.
fn bind_main(mut config: Config) -> Result<(std::net::TcpListener, Arc<Config>), StartError> {
    let listen = config.server.listen;
    let bind_err = |source| StartError::Bind {
        addr: listen,
        source,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    if listen.port() == 0 {
        config.auth.adopt_port(addr.port());
    }
    Ok((listener, Arc::new(config)))
}

/// Authentication, with the JWKS URL's keys fetched once.
async fn start_auth(
    config: &Config,
    api_keys: Option<KeyStore>,
    jwt_keys: Option<jwt::KeySet>,
    edge_tokens: Option<Arc<crate::auth::EdgeTokens>>,
) -> Result<(Arc<Authenticator>, Option<SecretString>), StartError> {
    let (mut auth, dev_key) = build_auth(config, api_keys, jwt_keys)?;
    if let Some(tokens) = edge_tokens {
        let audiences = config.auth.resources.iter().map(|(_, r)| r.clone());
        auth = auth.with_edge_tokens(tokens, audiences.collect(), config.rate_limit.tiers.clone());
        tracing::info!(issuer = %config.auth.oauth.as_ref().map(|o| o.issuer.as_str()).unwrap_or_default(), "OAuth authorization server on");
    }
    let auth = Arc::new(auth);
    if let Some(jwks) = RemoteJwks::new(&auth) {
        jwks.fetch_at_start().await;
    }
    Ok((auth, dev_key))
}

/// The serving certificate: from files or self-signed (`serving`), or from ACME.
struct Tls {
    serving: Option<tls::ServingTls>,
    acme: Option<crate::acme::Acme>,
    cert: Arc<crate::certs::CertStatus>,
}

impl Tls {
    fn start(config: &Config, serving: Option<tls::ServingTls>) -> Result<Tls, StartError> {
        let cert = crate::certs::CertStatus::new();
        let acme = match &config.tls {
            TlsConfig::Acme(settings) => Some(crate::acme::start(settings, cert.clone())?),
            _ => None,
        };
        observe_certificate(config, serving.as_ref(), &cert);
        let tls = Tls {
            serving,
            acme,
            cert,
        };
        if !tls.enabled() {
            tracing::warn!("TLS is OFF: serving plain HTTP on loopback; put a TLS proxy in front");
        }
        Ok(tls)
    }

    fn enabled(&self) -> bool {
        self.serving.is_some() || self.acme.is_some()
    }

    /// The acceptor's TLS mode (ACME starts ordering in the background), the dev
    /// certificate, and the reloadable rustls config of certificate files.
    fn into_mode(
        self,
        config: &Config,
        background: &mut Background,
    ) -> (crate::conn::TlsMode, Option<String>, Option<RustlsConfig>) {
        match (self.serving, self.acme) {
            (_, Some(acme)) => {
                let acceptor = acme.acceptor(config.server.handshake_timeout);
                background.acme_writes = Some(acme.writes());
                background.tasks.push(acme.spawn());
                (crate::conn::TlsMode::Acme(acceptor), None, None)
            }
            (Some(serving), None) => {
                let rustls = RustlsConfig::from_config(serving.config);
                let mode = crate::conn::TlsMode::Files(rustls.clone());
                (mode, serving.dev_cert_pem, Some(rustls))
            }
            (None, None) => (crate::conn::TlsMode::Plain, None, None),
        }
    }
}

/// The MCP service and the other routes to the backend: legacy SSE, and what the
/// peer listener serves to other replicas.
struct McpRoutes {
    parts: mcp::McpParts,
    legacy: Option<axum::Router<AppState>>,
    peer: axum::Router<AppState>,
}

impl McpRoutes {
    fn build(
        config: &Config,
        backend: &Backend,
        cluster: &Arc<crate::cluster::Cluster>,
        cancel: &CancellationToken,
    ) -> McpRoutes {
        let parts = mcp::build(config, backend.clone(), cancel.clone());
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
        let peer = axum::Router::new().nest_service("/mcp", parts.service.clone());
        let peer = match &legacy {
            Some(l) => peer.merge(server::legacy_sse::router(l.clone())),
            None => peer,
        };
        McpRoutes {
            legacy: legacy.map(server::legacy_sse::router),
            parts,
            peer,
        }
    }
}

/// The status page's sources, when `metrics.status_page` is on (see [`crate::status`]).
fn status_page(
    state: &AppState,
    redis: Option<Arc<crate::ratelimit::redis::RedisStore>>,
    token: Option<SecretString>,
) -> Option<Arc<crate::status::Status>> {
    let page = state.config.status_page.as_ref()?;
    let token = match (&page.token_file, token) {
        (Some(path), Some(token)) => Some(crate::status::StatusToken::new(path.clone(), &token)),
        _ => None,
    };
    Some(Arc::new(crate::status::Status {
        config: state.config.clone(),
        sessions: state.sessions.clone(),
        cert: state.cert.clone(),
        cluster: state.cluster.clone(),
        redis,
        refusals: state.refusals.clone().unwrap_or_default(),
        history: crate::status::History::new(),
        reloads: std::sync::OnceLock::new(),
        token,
        started: std::time::SystemTime::now(),
    }))
}

/// The state every handler shares (and the Redis store, if any). The Redis store
/// (limits, session caps) connects lazily, so a replica starts on its fallback while
/// Redis is still coming up.
#[allow(clippy::too_many_arguments)]
fn shared_state(
    config: &Arc<Config>,
    auth: Arc<Authenticator>,
    parts: &mcp::McpParts,
    cert: Arc<crate::certs::CertStatus>,
    cluster: Arc<crate::cluster::Cluster>,
    edge_tokens: Option<Arc<crate::auth::EdgeTokens>>,
    refusals: Option<Arc<crate::status::Refusals>>,
) -> Result<(AppState, Option<Arc<crate::ratelimit::redis::RedisStore>>), StartError> {
    let redis = match &config.redis {
        Some(settings) => Some(crate::ratelimit::redis::RedisStore::connect(settings)?),
        None => None,
    };
    if let Some(redis) = &redis {
        parts
            .registry
            .share_caps(redis.clone(), config.sessions.idle_timeout);
    }
    let limits = Arc::new(RateLimits::with_store(&config.rate_limit, redis.clone()));
    let audit = Arc::new(crate::telemetry::audit::Audit::start(&config.audit)?);
    let oauth = match (&config.auth.oauth, edge_tokens) {
        (Some(oauth_config), Some(tokens)) => {
            let policy = crate::auth::ToolPolicy::new(&config.access);
            let mut scopes: Vec<String> = config.auth.required_scopes.clone();
            scopes.extend(policy.all_scopes());
            scopes.sort();
            scopes.dedup();
            Some(
                crate::oauth::OAuth::new(crate::oauth::OAuthParts {
                    config: oauth_config.clone(),
                    resources: config
                        .auth
                        .resources
                        .iter()
                        .map(|(_, r)| r.clone())
                        .collect(),
                    scopes_supported: scopes,
                    tokens,
                    auth: auth.clone(),
                    cluster: cluster.clone(),
                    limits: limits.clone(),
                    audit: audit.clone(),
                    https: !matches!(config.tls, TlsConfig::Off),
                    redis: redis.clone(),
                })
                .inspect(|oauth| oauth.probe_idp())?,
            )
        }
        _ => None,
    };
    let state = server::app_state(server::StateParts {
        config: config.clone(),
        auth,
        limits,
        sessions: parts.registry.clone(),
        cert,
        cluster,
        audit,
        oauth,
        refusals,
    });
    Ok((state, redis))
}

/// The admin (`/metrics`) and redirect listeners, bound but not yet served.
struct SideListeners {
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    redirect: Option<(SocketAddr, std::net::TcpListener)>,
}

impl SideListeners {
    fn bind(config: &Config) -> Result<SideListeners, StartError> {
        let bind_err = |(addr, source)| StartError::Bind { addr, source };
        Ok(SideListeners {
            admin: crate::server::admin::bind(config).map_err(bind_err)?,
            redirect: crate::redirect::bind(config).map_err(bind_err)?,
        })
    }

    /// Serve both; returns their addresses.
    fn serve(
        self,
        state: &AppState,
        status: Option<Arc<crate::status::Status>>,
        background: &mut Background,
    ) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let admin = self.admin.map(|(addr, listener)| {
            background
                .tasks
                .push(crate::server::admin::serve(addr, listener, state, status));
            addr
        });
        let redirect = self.redirect.map(|(addr, listener)| {
            background.tasks.push(crate::redirect::serve(
                addr,
                listener,
                &state.config,
                state.allowed_hosts.clone(),
            ));
            addr
        });
        (admin, redirect)
    }
}

/// Serve the main listener through one acceptor chain for every TLS mode:
/// caps → PROXY header → TLS → timeouts. Returns once it accepts.
async fn serve_main(
    listener: std::net::TcpListener,
    state: &AppState,
    routes: &McpRoutes,
    tls: Tls,
    background: &mut Background,
) -> Result<(Listeners, Option<String>, Option<RustlsConfig>), StartError> {
    let config = &state.config;
    let tls_enabled = tls.enabled();
    let app = crate::redirect::with_hsts(
        server::router_with(
            state.clone(),
            routes.parts.service.clone(),
            routes.legacy.clone(),
        ),
        config,
        tls_enabled,
    )
    .into_make_service_with_connect_info::<SocketAddr>();
    let bind_err = |source| StartError::Bind {
        addr: config.server.listen,
        source,
    };
    let addr = listener.local_addr().map_err(bind_err)?;
    let (mode, dev_cert_pem, rustls) = tls.into_mode(config, background);
    let handle = Handle::new();
    let mut server = axum_server::from_tcp(listener)
        .map_err(bind_err)?
        .acceptor(crate::conn::EdgeAcceptor::new(&config.server, mode))
        .first_request_timeout(config.server.first_request_timeout)
        .handle(handle.clone());
    crate::conn::tune(server.http_builder(), &config.server.connections);
    let serve = tokio::spawn(server.serve(app));
    // `from_tcp` is already bound; this only waits for the accept loop to start.
    let _ = handle.listening().await;
    let listeners = Listeners {
        addr,
        tls: tls_enabled,
        handle,
        serve,
        admin: None,
        redirect: None,
        peer: None,
    };
    Ok((listeners, dev_cert_pem, rustls))
}

/// Serve the peer routes to the other replicas, when `cluster.peer_listen` is set.
fn serve_peer(
    listener: Option<(SocketAddr, std::net::TcpListener)>,
    state: &AppState,
    routes: axum::Router<AppState>,
    background: &mut Background,
) -> Result<Option<(SocketAddr, Handle<SocketAddr>)>, StartError> {
    let Some((peer_addr, listener)) = listener else {
        return Ok(None);
    };
    let handle = Handle::new();
    let app = server::peer_router(state.clone(), routes);
    let task = crate::cluster::peer::serve(listener, app, handle.clone()).map_err(|source| {
        StartError::Bind {
            addr: peer_addr,
            source,
        }
    })?;
    background.tasks.push(task);
    tracing::info!(%peer_addr, advertise = state.cluster.advertise().unwrap_or_default(), "peer listener up");
    Ok(Some((peer_addr, handle)))
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
fn reloadables(
    state: &AppState,
    parts: &mcp::McpParts,
    rustls: Option<RustlsConfig>,
    docs: Option<Arc<DocsIndex>>,
) -> Vec<Reloadable> {
    let (config, auth) = (&state.config, &state.auth);
    let mut all: Vec<Reloadable> = Vec::new();
    if config.auth.mode.api_keys()
        && let Some(path) = &config.auth.api_keys_file
    {
        all.push(Arc::new(mcp::ApiKeysFile {
            path: path.clone(),
            ctx: KeyContext::from_config(config),
            auth: auth.clone(),
            registry: parts.registry.clone(),
            manager: parts.session_manager.clone(),
        }));
    }
    if let Some(jwt_config) = &config.auth.jwt
        && !jwt::local_key_files(jwt_config).is_empty()
    {
        all.push(Arc::new(crate::auth::JwtKeyFiles {
            config: jwt_config.clone(),
            auth: auth.clone(),
        }));
    }
    if let Some(jwks) = RemoteJwks::new(auth) {
        all.push(Arc::new(jwks));
    }
    if let (
        TlsConfig::Files {
            cert_file,
            key_file,
        },
        Some(rustls),
    ) = (&config.tls, rustls)
    {
        all.push(Arc::new(tls::CertFiles {
            cert: cert_file.clone(),
            key: key_file.clone(),
            rustls,
            status: state.cert.clone(),
        }));
    }
    if let (Some(oauth), Some(path)) = (
        &state.oauth,
        config
            .auth
            .oauth
            .as_ref()
            .and_then(|o| o.signing_key_file.clone()),
    ) {
        all.push(Arc::new(crate::auth::edge_token::SigningKeyFile {
            path,
            tokens: oauth.tokens(),
        }));
    }
    if let Some(path) = &config.cluster.key_ring_file {
        all.push(Arc::new(crate::cluster::RingFile {
            path: path.clone(),
            cluster: state.cluster.clone(),
        }));
    }
    // Last: a forced rescan of the docs is the slowest.
    if let Some(index) = docs {
        all.push(Arc::new(crate::docs::IndexReload::new(index)));
    }
    all
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
    let (backend, docs) = backend(&config, None).await?;
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
