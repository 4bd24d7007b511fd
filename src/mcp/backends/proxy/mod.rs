//! The proxy backend: forwards MCP between the edge's clients and upstream servers.
//! See README.md in this folder for the design.
#![allow(deprecated)] // logging and resources/subscribe are SEP-2577-deprecated, still forwarded

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tracing::Instrument;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig,
    ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult, ErrorCode,
    GetExtensions, GetMeta, GetPromptRequest, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, InitializeRequestParams, InitializeResult, ListPromptsRequest,
    ListPromptsResult, ListResourceTemplatesRequest, ListResourceTemplatesResult,
    ListResourcesRequest, ListResourcesResult, ListToolsRequest, ListToolsResult,
    PaginatedRequestParams, PromptsCapability, ReadResourceRequest, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, RequestMetaObject, ResourcesCapability,
    ServerCapabilities, ServerConfig, ServerResult, SetLevelRequest, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, ToolsCapability, UnsubscribeRequest,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, ServiceError};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex as AsyncMutex;

use super::link::{Conn, Forwarder, Link, Ordered};
use super::process::{StdioSpec, Supervisor};
use crate::config::{BackendConfig, BackendKind, ProxyConfig};
use crate::mcp::{DocsBackend, tool_allowed, tool_denied_error};

/// Separator between a backend's name and its tool or prompt name.
pub const NAME_SEP: &str = "__";
/// Separator between a backend's name and a resource URI (`<name>+<uri>`).
pub const URI_SEP: char = '+';

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("backends[{index}] ({name}): {message}")]
    Backend {
        index: usize,
        name: String,
        message: String,
    },
}

/// How to reach an upstream MCP server.
#[derive(Clone)]
pub enum UpstreamSpec {
    Stdio(StdioSpec),
    Http {
        url: String,
        credential_file: Option<std::path::PathBuf>,
        client: reqwest::Client,
    },
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

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Backoff {
    fn check(&self, backend: &str) -> Result<(), ErrorData> {
        match self.retry_at {
            Some(at) if Instant::now() < at => Err(unavailable(
                backend,
                &format!(
                    "{} (restarting in {}ms)",
                    self.last_error,
                    (at - Instant::now()).as_millis()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn failed(&mut self, max: Duration, error: String) {
        self.failures = self.failures.saturating_add(1);
        let step = Duration::from_millis(100).saturating_mul(1 << self.failures.min(16));
        self.retry_at = Some(Instant::now() + step.min(max));
        self.last_error = error;
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

pub enum MemberKind {
    Docs(DocsBackend),
    Upstream(Box<Upstream>),
}

pub struct Member {
    pub name: Arc<str>,
    pub kind: MemberKind,
}

pub struct Shared {
    members: Vec<Member>,
    namespaced: bool,
    config: ProxyConfig,
    supervisor: Supervisor,
    /// Capabilities learned from the backends (probe at start, then each session).
    info: Mutex<ServerConfig>,
}

/// Per-session (or per stateless request) state of one handler instance.
#[derive(Default)]
pub struct SessionState {
    /// Set by `initialize`: this instance serves a session-mode client.
    client: OnceLock<InitializeRequestParams>,
    info: OnceLock<ServerConfig>,
    slots: AsyncMutex<HashMap<usize, Slot>>,
    label: Arc<Mutex<String>>,
}

#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    backoff: Backoff,
}

/// The proxy handler. The service factory makes one per session (and one per
/// stateless request) with [`Proxy::instance`]; its children live as long as it does.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    session: Arc<SessionState>,
}

fn unavailable(backend: &str, why: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INTERNAL_ERROR,
        format!("backend {backend:?} is unavailable: {why}"),
        None,
    )
}

fn service_error(backend: &str, e: ServiceError, timeout: Duration) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        ServiceError::Timeout { .. } => ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            format!(
                "backend {backend:?} did not answer within {} (proxy.call_timeout); the call was cancelled",
                humantime::format_duration(timeout)
            ),
            None,
        ),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            format!(
                "backend {backend:?} went away while handling the request (it is restarted on the next call)"
            ),
            None,
        ),
        other => ErrorData::internal_error(format!("backend {backend:?}: {other}"), None),
    }
}

/// Turn an upstream result into the type the method returns. rmcp's result type is
/// an untagged union, so a result may have been read as a look-alike variant.
fn expect<T: DeserializeOwned>(backend: &str, result: ServerResult) -> Result<T, ErrorData> {
    let value = serde_json::to_value(&result)
        .map_err(|e| ErrorData::internal_error(format!("backend {backend:?}: {e}"), None))?;
    serde_json::from_value(value).map_err(|e| {
        ErrorData::internal_error(
            format!("backend {backend:?} returned an unexpected result: {e}"),
            None,
        )
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

fn principal_label(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Arc<crate::auth::Principal>>())
        .map(|p| p.name.to_string())
}

fn session_id(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Proxy {
    /// Build the proxy from `[[backends]]` (docs members reuse `docs`).
    pub fn new(
        backends: &[BackendConfig],
        config: &ProxyConfig,
        docs: Option<DocsBackend>,
    ) -> Result<Proxy, ProxyError> {
        let mut members = Vec::new();
        for (index, b) in backends.iter().enumerate() {
            let err = |message: String| ProxyError::Backend {
                index,
                name: b.name.clone(),
                message,
            };
            let kind = match &b.kind {
                BackendKind::Docs => MemberKind::Docs(
                    docs.clone()
                        .ok_or_else(|| err("the docs index was not built".into()))?,
                ),
                BackendKind::Stdio {
                    command,
                    env,
                    env_allowlist,
                    cwd,
                } => MemberKind::Upstream(Box::new(Upstream {
                    spec: UpstreamSpec::Stdio(StdioSpec {
                        command: command.clone(),
                        env: env.clone(),
                        env_allowlist: env_allowlist.clone(),
                        cwd: cwd.clone(),
                    }),
                    pool: AsyncMutex::new(Pool::default()),
                })),
                BackendKind::Http {
                    url,
                    credential_file,
                    ca_file,
                    connect_timeout,
                } => {
                    crate::tls::install_crypto_provider();
                    let mut builder = reqwest::Client::builder()
                        .connect_timeout(*connect_timeout)
                        .pool_idle_timeout(Duration::from_secs(90));
                    if let Some(ca) = ca_file {
                        let pem = std::fs::read(ca)
                            .map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
                        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                            err(format!(
                                "ca_file {}: not a PEM certificate: {e}",
                                ca.display()
                            ))
                        })?;
                        if certs.is_empty() {
                            return Err(err(format!(
                                "ca_file {}: no certificate in it",
                                ca.display()
                            )));
                        }
                        for cert in certs {
                            builder = builder.add_root_certificate(cert);
                        }
                    }
                    if let Some(file) = credential_file {
                        // Checked now so a missing secret fails the start, not the first call.
                        read_credential(file).map_err(err)?;
                    }
                    let client = builder
                        .build()
                        .map_err(|e| err(format!("HTTP client: {e}")))?;
                    MemberKind::Upstream(Box::new(Upstream {
                        spec: UpstreamSpec::Http {
                            url: url.clone(),
                            credential_file: credential_file.clone(),
                            client,
                        },
                        pool: AsyncMutex::new(Pool::default()),
                    }))
                }
            };
            members.push(Member {
                name: b.name.as_str().into(),
                kind,
            });
        }
        let namespaced = members.len() > 1;
        let shared = Arc::new(Shared {
            members,
            namespaced,
            config: config.clone(),
            supervisor: Supervisor::new(config.max_children, config.kill_grace),
            info: Mutex::new(default_info(namespaced)),
        });
        spawn_pool_reaper(Arc::downgrade(&shared));
        Ok(Proxy {
            shared,
            session: Arc::default(),
        })
    }

    /// A fresh handler for one session or one stateless request.
    pub fn instance(&self) -> Proxy {
        Proxy {
            shared: self.shared.clone(),
            session: Arc::default(),
        }
    }

    /// Live child processes (all sessions and pools of this proxy).
    pub fn live_children(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.shared.supervisor.live()
    }

    /// Connect to every upstream once to learn its capabilities (and fail loudly at
    /// start if a command or URL is wrong). Failures are logged, not fatal.
    pub async fn probe(&self) {
        let client = edge_client_info(None);
        let mut infos = Vec::new();
        for (i, m) in self.shared.members.iter().enumerate() {
            match &m.kind {
                MemberKind::Docs(d) => infos.push((i, Some(d.get_info()))),
                MemberKind::Upstream(up) => {
                    let label = Arc::new(Mutex::new("probe".to_string()));
                    let link = Link::new(
                        m.name.clone(),
                        None,
                        None,
                        self.shared.config.call_timeout,
                        label,
                    );
                    match self.connect(m, up, link, client.clone()).await {
                        Ok(conn) => {
                            let info = conn.peer().peer_info().map(|i| peer_to_info(&i));
                            tracing::info!(
                                backend = %m.name,
                                server = ?info.as_ref().map(|i| format!("{} {}", i.server_info.name, i.server_info.version)),
                                "backend reachable"
                            );
                            infos.push((i, info));
                            // Keep it: the first pooled connection for stateless requests.
                            let mut pool = up.pool.lock().await;
                            conn.touch();
                            pool.conns.push(Arc::new(conn));
                        }
                        Err(e) => {
                            tracing::warn!(backend = %m.name, error = %e.message, "backend not reachable at start; will retry on use");
                            infos.push((i, None));
                        }
                    }
                }
            }
        }
        let merged = self.merge_info(&infos);
        *self.shared.info.lock().unwrap_or_else(|p| p.into_inner()) = merged;
    }

    /// Stop every child (on shutdown) and wait until they are reaped.
    pub async fn shutdown(&self, timeout: Duration) {
        for m in &self.shared.members {
            if let MemberKind::Upstream(up) = &m.kind {
                up.pool.lock().await.conns.clear();
            }
        }
        self.shared.supervisor.wait_all(timeout).await;
    }

    fn member_prefix(&self, m: &Member) -> Option<String> {
        self.shared.namespaced.then(|| m.name.to_string())
    }

    async fn connect(
        &self,
        member: &Member,
        up: &Upstream,
        link: Arc<Link>,
        client_info: ClientConfig,
    ) -> Result<Conn, ErrorData> {
        let timeout = self.shared.config.spawn_timeout;
        let name = &member.name;
        let forwarder = Forwarder {
            link: link.clone(),
            client_info,
        };
        match &up.spec {
            UpstreamSpec::Stdio(spec) => {
                let (child, stdout, stdin) = self
                    .shared
                    .supervisor
                    .spawn(name, spec, link.label.clone())
                    .map_err(|e| unavailable(name, &e.to_string()))?;
                let transport = Ordered::new(
                    rmcp::transport::async_rw::AsyncRwTransport::new_client(stdout, stdin),
                    link.clone(),
                );
                let started =
                    tokio::time::timeout(timeout, rmcp::serve_client(forwarder, transport)).await;
                match started {
                    Ok(Ok(service)) => Ok(Conn {
                        service,
                        link,
                        child: Some(child),
                        last_used: Mutex::new(Instant::now()),
                        started: Instant::now(),
                    }),
                    Ok(Err(e)) => Err(unavailable(
                        name,
                        &format!("the MCP handshake with the process failed: {e}"),
                    )),
                    Err(_) => Err(unavailable(
                        name,
                        &format!(
                            "no MCP handshake within {} (proxy.spawn_timeout)",
                            humantime::format_duration(timeout)
                        ),
                    )),
                }
            }
            UpstreamSpec::Http {
                url,
                credential_file,
                client,
            } => {
                use rmcp::transport::StreamableHttpClientTransport;
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                if let Some(file) = credential_file {
                    // Read on every connect, so a rotated secret file takes effect.
                    let token = read_credential(file).map_err(|e| unavailable(name, &e))?;
                    config = config.auth_header(token.expose_secret());
                }
                let transport = Ordered::new(
                    StreamableHttpClientTransport::with_client(
                        super::traced::TracedClient(client.clone()),
                        config,
                    ),
                    link.clone(),
                );
                match tokio::time::timeout(timeout, rmcp::serve_client(forwarder, transport)).await
                {
                    Ok(Ok(service)) => Ok(Conn {
                        service,
                        link,
                        child: None,
                        last_used: Mutex::new(Instant::now()),
                        started: Instant::now(),
                    }),
                    Ok(Err(e)) => Err(unavailable(
                        name,
                        &format!("cannot open an MCP session upstream: {e}"),
                    )),
                    Err(_) => Err(unavailable(
                        name,
                        &format!(
                            "no MCP handshake within {} (proxy.spawn_timeout)",
                            humantime::format_duration(timeout)
                        ),
                    )),
                }
            }
        }
    }

    /// The connection to member `index` for this request: the session's own (started
    /// or restarted as needed) or one from the stateless pool.
    async fn conn(
        &self,
        index: usize,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<Conn>, ErrorData> {
        let member = &self.shared.members[index];
        let MemberKind::Upstream(up) = &member.kind else {
            return Err(ErrorData::internal_error("not an upstream backend", None));
        };
        let backoff_max = self.shared.config.restart_backoff_max;
        if let Some(client) = self.session.client.get() {
            if let Some(id) = session_id(context) {
                let mut label = self.session.label.lock().unwrap_or_else(|p| p.into_inner());
                if !label.contains(&id) {
                    *label = format!("{} {id}", label.trim_end_matches(" (new)"));
                }
            }
            let mut slots = self.session.slots.lock().await;
            let slot = slots.entry(index).or_default();
            if let Some(conn) = &slot.conn {
                if conn.is_alive() {
                    return Ok(conn.clone());
                }
                tracing::warn!(backend = %member.name, session = %self.session.label.lock().map(|l| l.clone()).unwrap_or_default(), "backend connection lost; restarting it");
                // A child that ran a good while before dying starts a fresh backoff.
                if conn.started.elapsed() > Duration::from_secs(60) {
                    slot.backoff.succeeded();
                }
                slot.conn = None;
                slot.backoff.failed(backoff_max, "it exited".into());
            }
            slot.backoff.check(&member.name)?;
            let link = Link::new(
                member.name.clone(),
                self.member_prefix(member),
                Some(context.peer.clone()),
                self.shared.config.call_timeout,
                self.session.label.clone(),
            );
            match self.connect(member, up, link, client.clone()).await {
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
                    slot.backoff.failed(backoff_max, e.message.to_string());
                    Err(e)
                }
            }
        } else {
            let mut pool = up.pool.lock().await;
            pool.conns.retain(|c| c.is_alive());
            // Grow up to pool_size; while a restart backs off, use the ones still alive.
            let backing_off = pool.backoff.check(&member.name);
            if pool.conns.is_empty() {
                backing_off.clone()?;
            }
            if pool.conns.len() < self.shared.config.pool_size && backing_off.is_ok() {
                {
                    let link = Link::new(
                        member.name.clone(),
                        self.member_prefix(member),
                        None,
                        self.shared.config.call_timeout,
                        Arc::new(Mutex::new("stateless".into())),
                    );
                    match self.connect(member, up, link, edge_client_info(None)).await {
                        Ok(conn) => {
                            pool.backoff.succeeded();
                            let conn = Arc::new(conn);
                            pool.conns.push(conn.clone());
                            return Ok(conn);
                        }
                        Err(e) if pool.conns.is_empty() => {
                            pool.backoff.failed(backoff_max, e.message.to_string());
                            return Err(e);
                        }
                        Err(e) => {
                            pool.backoff.failed(backoff_max, e.message.to_string());
                        }
                    }
                }
            }
            pool.next = pool.next.wrapping_add(1);
            let i = pool.next % pool.conns.len();
            Ok(pool.conns[i].clone())
        }
    }

    /// Send `request` to member `index` on behalf of the downstream `context`:
    /// progress comes back with the client's own token, a client cancel cancels
    /// upstream, and the result comes back only after every notification the upstream
    /// sent before it was handed to the client.
    async fn forward(
        &self,
        index: usize,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let member = &self.shared.members[index];
        let kind = match &member.kind {
            MemberKind::Upstream(up) if matches!(up.spec, UpstreamSpec::Http { .. }) => "http",
            MemberKind::Upstream(_) => "stdio",
            MemberKind::Docs(_) => "docs",
        };
        let span = super::traced::backend_span(context, request.method(), &member.name, kind);
        let result = self
            .forward_in(index, request, context, &span)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result {
            super::traced::failed(&span, e);
        }
        result
    }

    async fn forward_in(
        &self,
        index: usize,
        mut request: ClientRequest,
        context: &RequestContext<RoleServer>,
        span: &tracing::Span,
    ) -> Result<ServerResult, ErrorData> {
        let conn = self.conn(index, context).await?;
        conn.touch();
        let backend = self.shared.members[index].name.clone();
        *request.get_meta_mut() = forwarded_meta(&context.meta);
        super::traced::propagate(span, request.get_meta_mut());
        let (route, route_guard) = conn.link.route(
            context.peer.clone(),
            context.meta.get_progress_token(),
            context.id.clone(),
        );
        // The transport registers the route before the request is written.
        request.extensions_mut().insert(route);
        let timeout = self.shared.config.call_timeout;
        let handle = conn
            .peer()
            .send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
            .await
            .map_err(|e| service_error(&backend, e, timeout))?;
        let upstream_id = handle.id.clone();
        let peer = handle.peer.clone();
        let result = tokio::select! {
            r = handle.await_response() => r.map_err(|e| service_error(&backend, e, timeout)),
            _ = context.ct.cancelled() => {
                let _ = peer
                    .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                        Some(upstream_id),
                        Some("cancelled by the client".into()),
                    ))
                    .await;
                Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None))
            }
        };
        route_guard.settle().await;
        drop(route_guard);
        conn.touch();
        result
    }

    fn find_by_name<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        if !self.shared.namespaced {
            return Some((0, name));
        }
        self.shared.members.iter().enumerate().find_map(|(i, m)| {
            name.strip_prefix(&*m.name)
                .and_then(|rest| rest.strip_prefix(NAME_SEP))
                .map(|rest| (i, rest))
        })
    }

    fn find_by_uri<'a>(&self, uri: &'a str) -> Option<(usize, &'a str)> {
        if !self.shared.namespaced {
            return Some((0, uri));
        }
        self.shared.members.iter().enumerate().find_map(|(i, m)| {
            uri.strip_prefix(&*m.name)
                .and_then(|rest| rest.strip_prefix(URI_SEP))
                .map(|rest| (i, rest))
        })
    }

    fn names(&self, index: usize, name: &str) -> String {
        if self.shared.namespaced {
            format!("{}{NAME_SEP}{name}", self.shared.members[index].name)
        } else {
            name.to_owned()
        }
    }

    fn uris(&self, index: usize, uri: &str) -> String {
        if self.shared.namespaced {
            format!("{}{URI_SEP}{uri}", self.shared.members[index].name)
        } else {
            uri.to_owned()
        }
    }

    fn merge_info(&self, infos: &[(usize, Option<ServerConfig>)]) -> ServerConfig {
        if !self.shared.namespaced
            && let Some((_, Some(info))) = infos.first()
        {
            let mut info = info.clone();
            // Extensions (tasks, skills) need methods this proxy does not forward.
            info.capabilities.extensions = None;
            info.capabilities.experimental = None;
            info.meta = None;
            return info;
        }
        let mut caps = ServerCapabilities::default();
        let mut instructions = Vec::new();
        for (i, info) in infos {
            let Some(info) = info else { continue };
            let c = &info.capabilities;
            if c.tools.is_some() {
                let mut t = ToolsCapability::default();
                t.list_changed = Some(true);
                caps.tools = Some(t);
            }
            if c.prompts.is_some() {
                let mut p = PromptsCapability::default();
                p.list_changed = Some(true);
                caps.prompts = Some(p);
            }
            if let Some(r) = &c.resources {
                let mut merged = caps
                    .resources
                    .take()
                    .unwrap_or_else(ResourcesCapability::default);
                merged.subscribe =
                    Some(merged.subscribe.unwrap_or(false) || r.subscribe.unwrap_or(false));
                merged.list_changed = Some(true);
                caps.resources = Some(merged);
            }
            if c.completions.is_some() {
                caps.completions = Some(Default::default());
            }
            if c.logging.is_some() {
                caps.logging = Some(Default::default());
            }
            if let Some(text) = &info.instructions {
                instructions.push(format!("[{}] {text}", self.shared.members[*i].name));
            }
        }
        if infos.iter().all(|(_, i)| i.is_none()) {
            return default_info(self.shared.namespaced);
        }
        let mut info = ServerConfig::new(caps)
            .with_server_info(Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")));
        if !instructions.is_empty() {
            info = info.with_instructions(instructions.join("\n"));
        }
        info
    }

    /// Collect every page of a list from every member.
    async fn list_all<T, F>(
        &self,
        context: &RequestContext<RoleServer>,
        make: impl Fn(Option<PaginatedRequestParams>) -> ClientRequest,
        docs: impl AsyncFn(
            &DocsBackend,
            Option<PaginatedRequestParams>,
            RequestContext<RoleServer>,
        ) -> Result<T, ErrorData>,
        mut take: F,
    ) -> Result<(), ErrorData>
    where
        T: DeserializeOwned + serde::Serialize,
        F: FnMut(usize, T) -> Option<String>,
    {
        let single = self.shared.members.len() == 1;
        for (i, m) in self.shared.members.iter().enumerate() {
            let mut cursor: Option<String> = None;
            for _page in 0..1000 {
                let params = cursor.take().map(|c| {
                    let mut p = PaginatedRequestParams::default();
                    p.cursor = Some(c);
                    p
                });
                let page: Result<T, ErrorData> = match &m.kind {
                    MemberKind::Docs(d) => docs(d, params, context.clone()).await,
                    MemberKind::Upstream(_) => match self.forward(i, make(params), context).await {
                        Ok(r) => expect(&m.name, r),
                        Err(e) => Err(e),
                    },
                };
                match page {
                    Ok(page) => cursor = take(i, page),
                    // A member without this feature (e.g. docs has no prompts) lists nothing.
                    Err(e) if !single && e.code == ErrorCode::METHOD_NOT_FOUND => break,
                    // One failing backend must not hide the others' lists.
                    Err(e) if !single => {
                        tracing::warn!(backend = %m.name, error = %e.message, "list failed; leaving this backend out");
                        break;
                    }
                    Err(e) => return Err(e),
                }
                if cursor.is_none() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The context for a docs member's tools: access was already decided here with the
/// namespaced name the client sees, so the docs backend must not check the bare name
/// again (it checks only when the HTTP request parts are present).
fn access_checked(mut context: RequestContext<RoleServer>) -> RequestContext<RoleServer> {
    context.extensions.remove::<http::request::Parts>();
    context
}

fn peer_to_info(p: &rmcp::model::ServerPeerInfo) -> ServerConfig {
    let mut info = ServerConfig::new(p.capabilities.clone());
    info.protocol_version = p.protocol_version.clone();
    if let Some(s) = &p.server_info {
        info.server_info = s.clone();
    }
    info.instructions = p.instructions.clone();
    info
}

fn read_credential(file: &std::path::Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("credential_file {}: {e}", file.display()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(['\n', '\r']) {
        return Err(format!(
            "credential_file {}: must hold one token on one line",
            file.display()
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

fn edge_client_info(from: Option<&InitializeRequestParams>) -> ClientConfig {
    match from {
        Some(p) => p.clone(),
        None => {
            let mut c = ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")),
            );
            // The newest version that still has an initialize handshake: the widest
            // support among stdio/HTTP servers in the field.
            c.protocol_version = rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE;
            c
        }
    }
}

fn default_info(namespaced: bool) -> ServerConfig {
    let _ = namespaced;
    ServerConfig::new(
        ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_prompts()
            .enable_completions()
            .enable_logging()
            .build(),
    )
    .with_server_info(Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")))
}

/// Close pooled connections nobody used for `proxy.pool_idle_timeout`.
fn spawn_pool_reaper(shared: Weak<Shared>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = shared
        .upgrade()
        .map(|s| s.config.pool_idle_timeout / 2)
        .unwrap_or_default()
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let idle = shared.config.pool_idle_timeout;
            for m in &shared.members {
                if let MemberKind::Upstream(up) = &m.kind {
                    let mut pool = up.pool.lock().await;
                    let before = pool.conns.len();
                    pool.conns
                        .retain(|c| c.is_alive() && (Arc::strong_count(c) > 1 || c.idle_for() < idle));
                    if pool.conns.len() < before {
                        tracing::debug!(backend = %m.name, closed = before - pool.conns.len(), "closed idle pooled backend connections");
                    }
                }
            }
        }
    });
}

impl ServerHandler for Proxy {
    fn get_info(&self) -> ServerConfig {
        if let Some(info) = self.session.info.get() {
            return info.clone();
        }
        self.shared
            .info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        {
            let mut label = self.session.label.lock().unwrap_or_else(|p| p.into_inner());
            *label = match principal_label(&context) {
                Some(p) => format!("{p} (new)"),
                None => "(new)".into(),
            };
        }
        let _ = self.session.client.set(request.clone());
        // Start this session's own backends now: the client learns their real
        // capabilities, and a broken backend fails the handshake, not a later call.
        let mut infos = Vec::new();
        let mut first_error = None;
        for (i, m) in self.shared.members.iter().enumerate() {
            match &m.kind {
                MemberKind::Docs(d) => infos.push((i, Some(d.get_info()))),
                MemberKind::Upstream(_) => match self.conn(i, &context).await {
                    Ok(conn) => infos.push((i, conn.peer().peer_info().map(|p| peer_to_info(&p)))),
                    Err(e) => {
                        tracing::warn!(backend = %m.name, error = %e.message, "backend unavailable for a new session");
                        infos.push((i, None));
                        first_error.get_or_insert(e);
                    }
                },
            }
        }
        if let Some(e) = first_error
            && !self.shared.namespaced
        {
            return Err(e);
        }
        let merged = self.merge_info(&infos);
        let _ = self.session.info.set(merged);
        self.negotiate_initialize(&request)
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = Vec::new();
        self.list_all(
            &context,
            |p| {
                ClientRequest::ListToolsRequest(ListToolsRequest {
                    params: p,
                    ..Default::default()
                })
            },
            async |d: &DocsBackend, p, c| d.list_tools(p, access_checked(c)).await,
            |i, page: ListToolsResult| {
                for mut tool in page.tools {
                    tool.name = self.names(i, &tool.name).into();
                    if tool_allowed(&context, &tool.name).is_ok() {
                        tools.push(tool);
                    }
                }
                page.next_cursor
            },
        )
        .await?;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let full = request.name.to_string();
        let Some((index, name)) = self.find_by_name(&full) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {full:?}"),
                None,
            ));
        };
        if let Err(denied) = tool_allowed(&context, &full) {
            return Err(tool_denied_error(&denied));
        }
        request.name = name.to_owned().into();
        request.meta = None;
        match &self.shared.members[index].kind {
            MemberKind::Docs(d) => {
                let backend = &self.shared.members[index].name;
                let span = super::traced::backend_span(&context, "tools/call", backend, "docs");
                let result = d
                    .call_tool(request, access_checked(context))
                    .instrument(span.clone())
                    .await;
                if let Err(e) = &result {
                    super::traced::failed(&span, e);
                }
                result
            }
            MemberKind::Upstream(_) => {
                let backend = self.shared.members[index].name.clone();
                let result = self
                    .forward(
                        index,
                        ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                        &context,
                    )
                    .await?;
                match result {
                    ServerResult::CallToolResult(r) => Ok(r.into()),
                    ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
                    other => Ok(CallToolResponse::Complete(expect(&backend, other)?)),
                }
            }
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts = Vec::new();
        self.list_all(
            &context,
            |p| {
                ClientRequest::ListPromptsRequest(ListPromptsRequest {
                    params: p,
                    ..Default::default()
                })
            },
            async |d: &DocsBackend, p, c| d.list_prompts(p, c).await,
            |i, page: ListPromptsResult| {
                for mut prompt in page.prompts {
                    prompt.name = self.names(i, &prompt.name);
                    prompts.push(prompt);
                }
                page.next_cursor
            },
        )
        .await?;
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let full = request.name.clone();
        let Some((index, name)) = self.find_by_name(&full) else {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt {full:?}"),
                None,
            ));
        };
        request.name = name.to_owned();
        request.meta = None;
        match &self.shared.members[index].kind {
            MemberKind::Docs(d) => d.get_prompt(request, context).await,
            MemberKind::Upstream(_) => {
                let backend = self.shared.members[index].name.clone();
                let r = self
                    .forward(
                        index,
                        ClientRequest::GetPromptRequest(GetPromptRequest::new(request)),
                        &context,
                    )
                    .await?;
                match r {
                    ServerResult::GetPromptResult(r) => Ok(r.into()),
                    ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
                    other => Ok(expect::<GetPromptResult>(&backend, other)?.into()),
                }
            }
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut resources = Vec::new();
        self.list_all(
            &context,
            |p| {
                ClientRequest::ListResourcesRequest(ListResourcesRequest {
                    params: p,
                    ..Default::default()
                })
            },
            async |d: &DocsBackend, p, c| d.list_resources(p, c).await,
            |i, page: ListResourcesResult| {
                for mut r in page.resources {
                    r.uri = self.uris(i, &r.uri);
                    if self.shared.namespaced {
                        r.name = self.names(i, &r.name);
                    }
                    resources.push(r);
                }
                page.next_cursor
            },
        )
        .await?;
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut templates = Vec::new();
        self.list_all(
            &context,
            |p| {
                ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest {
                    params: p,
                    ..Default::default()
                })
            },
            async |d: &DocsBackend, p, c| d.list_resource_templates(p, c).await,
            |i, page: ListResourceTemplatesResult| {
                for mut t in page.resource_templates {
                    t.uri_template = self.uris(i, &t.uri_template);
                    if self.shared.namespaced {
                        t.name = self.names(i, &t.name);
                    }
                    templates.push(t);
                }
                page.next_cursor
            },
        )
        .await?;
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let full = request.uri.clone();
        let Some((index, uri)) = self.find_by_uri(&full) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {full:?}"),
                None,
            ));
        };
        request.uri = uri.to_owned();
        request.meta = None;
        let result = match &self.shared.members[index].kind {
            MemberKind::Docs(d) => d.read_resource(request, context).await?,
            MemberKind::Upstream(_) => {
                let backend = self.shared.members[index].name.clone();
                let r = self
                    .forward(
                        index,
                        ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request)),
                        &context,
                    )
                    .await?;
                match r {
                    ServerResult::ReadResourceResult(r) => r.into(),
                    ServerResult::InputRequiredResult(r) => ReadResourceResponse::InputRequired(r),
                    other => expect::<ReadResourceResult>(&backend, other)?.into(),
                }
            }
        };
        Ok(match result {
            ReadResourceResponse::Complete(mut r) if self.shared.namespaced => {
                for c in &mut r.contents {
                    rename_contents_uri(c, |u| self.uris(index, u));
                }
                ReadResourceResponse::Complete(r)
            }
            other => other,
        })
    }

    async fn subscribe(
        &self,
        mut request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let full = request.uri.clone();
        let Some((index, uri)) = self.find_by_uri(&full) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {full:?}"),
                None,
            ));
        };
        request.uri = uri.to_owned();
        if let MemberKind::Docs(_) = self.shared.members[index].kind {
            return Ok(());
        }
        let req = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        self.forward(index, req, &context).await.map(|_| ())
    }

    async fn unsubscribe(
        &self,
        mut request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let full = request.uri.clone();
        let Some((index, uri)) = self.find_by_uri(&full) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {full:?}"),
                None,
            ));
        };
        request.uri = uri.to_owned();
        if let MemberKind::Docs(_) = self.shared.members[index].kind {
            return Ok(());
        }
        let req = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
        self.forward(index, req, &context).await.map(|_| ())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let (index, inner) = match &request.r#ref {
            Reference::Prompt(p) => {
                let Some((i, name)) = self.find_by_name(&p.name) else {
                    return Err(ErrorData::invalid_params(
                        format!("unknown prompt {:?}", p.name),
                        None,
                    ));
                };
                let mut p = p.clone();
                p.name = name.to_owned();
                (i, Reference::Prompt(p))
            }
            Reference::Resource(r) => {
                let Some((i, uri)) = self.find_by_uri(&r.uri) else {
                    return Err(ErrorData::invalid_params(
                        format!("unknown resource template {:?}", r.uri),
                        None,
                    ));
                };
                let mut r = r.clone();
                r.uri = uri.to_owned();
                (i, Reference::Resource(r))
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        request.r#ref = inner;
        request.meta = None;
        match &self.shared.members[index].kind {
            MemberKind::Docs(d) => d.complete(request, context).await,
            MemberKind::Upstream(_) => {
                let backend = self.shared.members[index].name.clone();
                let r = self
                    .forward(
                        index,
                        ClientRequest::CompleteRequest(CompleteRequest::new(request)),
                        &context,
                    )
                    .await?;
                match r {
                    ServerResult::CompleteResult(r) => Ok(r),
                    other => expect(&backend, other),
                }
            }
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let mut last_error = None;
        let mut any = false;
        for (i, m) in self.shared.members.iter().enumerate() {
            if let MemberKind::Upstream(_) = m.kind {
                let req = ClientRequest::SetLevelRequest(SetLevelRequest::new(request.clone()));
                match self.forward(i, req, &context).await {
                    Ok(_) => any = true,
                    Err(e) => last_error = Some(e),
                }
            }
        }
        match last_error {
            Some(e) if !any => Err(e),
            _ => Ok(()),
        }
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        let slots = self.session.slots.lock().await;
        for slot in slots.values() {
            if let Some(conn) = &slot.conn {
                let _ = conn.peer().notify_roots_list_changed().await;
            }
        }
    }
}

fn rename_contents_uri(c: &mut rmcp::model::ResourceContents, f: impl Fn(&str) -> String) {
    use rmcp::model::ResourceContents;
    match c {
        ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } => *uri = f(uri),
        #[allow(unreachable_patterns)]
        _ => {}
    }
}
