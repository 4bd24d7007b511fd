//! The proxy backend: forwards MCP between the edge's clients and upstream servers.
//! See README.md in the parent folder for the design.
//!
//! This file is the handler (`ServerHandler for Proxy`: routing each method to its
//! member, renaming, merging lists). The parts it is made of, leaves first:
//! [`error`] (why a request failed, and whose fault), [`namespacing`] (names and URIs
//! of several members, merged server info), [`stdio`] and [`http`] (connecting to the
//! two upstream kinds), [`upstream`] (a session's connection and the stateless pool,
//! restart backoff), [`members`] (built from `[[backends]]`), [`forward`] (one request
//! sent upstream).
#![allow(deprecated)] // logging and resources/subscribe are SEP-2577-deprecated, still forwarded

mod error;
mod forward;
mod http;
mod members;
mod namespacing;
mod questions;
mod stdio;
mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, ErrorCode, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, InitializeRequestParams, InitializeResult,
    ListPromptsRequest, ListPromptsResult, ListResourceTemplatesRequest,
    ListResourceTemplatesResult, ListResourcesRequest, ListResourcesResult, ListToolsRequest,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequest, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, ResultType, ServerConfig, ServerResult,
    SetLevelRequest, SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams,
    UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex as AsyncMutex;

use super::credentials::{ClientCredentials, Credentials, StartFor};
use super::link::{Conn, Listeners, Listening};
use super::process::Supervisor;
use crate::config::{BackendConfig, ProxyConfig, Share};
use crate::mcp::{DocsBackend, tool_allowed, tool_denied_error};
use crate::sync::lock;
pub use error::{CallError, Fault};
use forward::expect;
pub use members::{Member, MemberKind, ProxyError};
pub use namespacing::{NAME_SEP, Namespace, URI_SEP};
use namespacing::{default_info, peer_to_info, rename_contents_uri};
use upstream::{Dial, Slot, stateless_client_info};
pub use upstream::{Upstream, UpstreamSpec};

pub struct Shared {
    members: Vec<Member>,
    ns: Namespace,
    config: ProxyConfig,
    supervisor: Supervisor,
    /// Capabilities learned from the backends (probe at start, then each session).
    info: Mutex<ServerConfig>,
    /// Backend questions awaiting a stateless client's retry.
    questions: Arc<questions::Questions>,
}

/// Per-session (or per stateless request) state of one handler instance.
#[derive(Default)]
pub struct SessionState {
    /// Set by `initialize`: this instance serves a session-mode client.
    client: OnceLock<InitializeRequestParams>,
    info: OnceLock<ServerConfig>,
    slots: AsyncMutex<HashMap<usize, Slot>>,
    /// `share = "principal"` members: this session hears its principal's connection.
    listening: Mutex<HashMap<usize, Listening>>,
    /// Who hears the session's own connections (this session, while it lives).
    own_listeners: OnceLock<(Listeners, Listening)>,
    label: Arc<Mutex<String>>,
}

/// The proxy handler. The service factory makes one per session (and one per
/// stateless request) with [`Proxy::instance`]; its children live as long as it does.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    session: Arc<SessionState>,
}

fn principal_of(context: &RequestContext<RoleServer>) -> Option<Arc<str>> {
    context
        .extensions
        .get::<::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Arc<crate::auth::Principal>>())
        .map(|p| p.name.clone())
}

/// Whom a stateless request's principal connection serves. A request with no
/// principal (the stdio transport, `auth.mode = "none"`) is the anonymous one.
fn principal_name(context: &RequestContext<RoleServer>) -> Arc<str> {
    principal_of(context).unwrap_or_else(|| "anonymous".into())
}

/// The credential headers the chain took off this request (see [`ClientCredentials`]).
fn client_credentials(context: &RequestContext<RoleServer>) -> Option<&ClientCredentials> {
    context
        .extensions
        .get::<::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Arc<ClientCredentials>>())
        .map(|c| &**c)
}

fn session_id(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .extensions
        .get::<::http::request::Parts>()
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
        let members = members::build(backends, docs.as_ref())?;
        let ns = Namespace::new(members.iter().map(|m| m.name.clone()).collect());
        let shared = Arc::new(Shared {
            members,
            ns,
            config: config.clone(),
            supervisor: Supervisor::new(config.max_children, config.kill_grace),
            info: Mutex::new(default_info()),
            questions: questions::Questions::new(config.max_pending_inputs, config.input_timeout),
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

    /// Let stateless clients answer backends' questions (see `questions`).
    pub fn set_sealer(&self, sealer: Arc<dyn super::request_state::Sealer>) {
        self.shared.questions.set_sealer(sealer);
    }

    /// Live child processes (all sessions and pools of this proxy).
    pub fn live_children(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.shared.supervisor.live()
    }

    /// Connect to every upstream once to learn its capabilities (and fail loudly at
    /// start if a command or URL is wrong). Failures are logged, not fatal.
    pub async fn probe(&self) {
        let mut infos = Vec::new();
        for (i, m) in self.shared.members.iter().enumerate() {
            match &m.kind {
                MemberKind::Docs(d) => infos.push((i, Some(d.get_info()))),
                // A child of a backend with per-principal credentials starts only for
                // a principal, with that principal's credentials.
                MemberKind::Upstream(up) if up.has_credentials() => {
                    tracing::info!(backend = %m.name, "not probed at start: its processes start per principal, with that principal's credentials");
                    infos.push((i, None));
                }
                MemberKind::Upstream(up) => {
                    let label = Arc::new(Mutex::new("probe".to_string()));
                    let link = super::link::Link::new(
                        m.name.clone(),
                        None,
                        Listeners::default(),
                        self.shared.config.call_timeout,
                        label,
                    );
                    let none = Credentials::default();
                    // Kept as the first pooled connection: introduced as those are.
                    let info = stateless_client_info(self.shared.questions.enabled());
                    match up.connect(&self.dial(i), link, info, &none, "").await {
                        Ok(conn) => {
                            let info = conn.peer().peer_info().map(|i| peer_to_info(&i));
                            tracing::info!(
                                backend = %m.name,
                                server = ?info.as_ref().map(|i| format!("{} {}", i.server_info.name, i.server_info.version)),
                                "backend reachable"
                            );
                            infos.push((i, info));
                            // Keep it: the first pooled connection for stateless requests.
                            up.keep(conn).await;
                        }
                        Err(e) => {
                            tracing::warn!(backend = %m.name, error = %e, fault = ?e.fault(), "backend not reachable at start; will retry on use");
                            infos.push((i, None));
                        }
                    }
                }
            }
        }
        let merged = self.shared.ns.merge_info(&infos);
        *lock(&self.shared.info) = merged;
    }

    /// Stop every child (on shutdown) and wait until they are reaped.
    pub async fn shutdown(&self, timeout: Duration) {
        self.shared.questions.clear();
        for m in &self.shared.members {
            if let MemberKind::Upstream(up) = &m.kind {
                up.close_pool().await;
            }
        }
        self.shared.supervisor.wait_all(timeout).await;
    }

    fn dial(&self, index: usize) -> Dial<'_> {
        Dial {
            backend: &self.shared.members[index].name,
            prefix: self.shared.ns.prefix(index),
            config: &self.shared.config,
            supervisor: &self.shared.supervisor,
            asks: self.shared.questions.enabled(),
        }
    }

    /// The connection to member `index` for this request: the session's own (started
    /// or restarted as needed) or one from the stateless pool.
    async fn conn(
        &self,
        index: usize,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<Conn>, CallError> {
        let MemberKind::Upstream(up) = &self.shared.members[index].kind else {
            return Err(CallError::NotUpstream);
        };
        let dial = self.dial(index);
        let Some(client) = self.session.client.get() else {
            return match up.share() {
                Share::All => up.pooled_conn(&dial).await,
                Share::None | Share::Principal => {
                    let (conn, _) = self.principal_conn(up, &dial, context, None, None).await?;
                    Ok(conn)
                }
            };
        };
        if up.share() == Share::Principal {
            // The principal's one child serves this session too; the first call
            // attaches the session to its notifications for the session's life.
            let attach =
                (!lock(&self.session.listening).contains_key(&index)).then(|| context.peer.clone());
            let (conn, listening) = self
                .principal_conn(up, &dial, context, Some(client), attach)
                .await?;
            if let Some(listening) = listening {
                lock(&self.session.listening).insert(index, listening);
            }
            return Ok(conn);
        }
        if let Some(id) = session_id(context) {
            let mut label = lock(&self.session.label);
            if !label.contains(&id) {
                *label = format!("{} {id}", label.trim_end_matches(" (new)"));
            }
        }
        let mut slots = self.session.slots.lock().await;
        let slot = slots.entry(index).or_default();
        let label = self.session.label.clone();
        let listeners = self
            .session
            .own_listeners
            .get_or_init(|| Listeners::one(context.peer.clone()))
            .0
            .clone();
        // A session's child is its principal's: started with that principal's credentials.
        let principal = principal_name(context);
        let who = StartFor {
            principal: &principal,
            client: client_credentials(context),
        };
        up.slot_conn(&dial, slot, listeners, label, client, who)
            .await
    }

    /// The connection of the request's principal to `up` (see
    /// [`Upstream::principal_conn`]). At `proxy.max_children`, the principal
    /// connection idle longest (of any member) is stopped to make room; one with a
    /// request in flight, or serving sessions, never is.
    async fn principal_conn(
        &self,
        up: &Upstream,
        dial: &Dial<'_>,
        context: &RequestContext<RoleServer>,
        init: Option<&InitializeRequestParams>,
        attach: Option<rmcp::service::Peer<RoleServer>>,
    ) -> Result<(Arc<Conn>, Option<Listening>), CallError> {
        let principal = principal_name(context);
        let creds = client_credentials(context);
        match up
            .principal_conn(dial, &principal, init, creds, attach.clone())
            .await
        {
            Err(e) if e.is_at_child_cap() && self.make_room().await => {
                up.principal_conn(dial, &principal, init, creds, attach)
                    .await
            }
            other => other,
        }
    }

    /// Stop the principal connection idle longest, and wait (bounded) until its child
    /// is gone. False when there was none to stop.
    async fn make_room(&self) -> bool {
        let upstreams = || {
            self.shared.members.iter().filter_map(|m| match &m.kind {
                MemberKind::Upstream(up) => Some((&m.name, up)),
                MemberKind::Docs(_) => None,
            })
        };
        let oldest = upstreams()
            .filter_map(|(name, up)| Some((name, up, up.least_recently_used()?)))
            .max_by_key(|(_, _, idle)| idle.idle_for);
        let Some((backend, up, idle)) = oldest else {
            return false;
        };
        let Some(conn) = up.evict(&idle.principal) else {
            return false;
        };
        tracing::info!(backend = %backend, principal = %idle.principal, idle_for = ?idle.idle_for, "stopping the least recently used principal's backend process to make room (proxy.max_children)");
        let exited = conn.child.as_ref().map(|c| c.exit_watch());
        drop(conn);
        if let Some(mut exited) = exited {
            let wait = self.shared.config.kill_grace + Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, exited.wait_for(|gone| *gone)).await;
        }
        true
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
            MemberKind::Upstream(up) => up.kind(),
            MemberKind::Docs(_) => "docs",
        };
        let span = super::traced::backend_span(context, request.method(), &member.name, kind);
        let result = async {
            let timeout = self.shared.config.call_timeout;
            let questions = &self.shared.questions;
            let stateless = self.session.client.get().is_none();
            // Only a stateless call can be asked (or bring an answer): a session's call
            // skips the binding's digest.
            if let Some(ask) = stateless
                .then(|| questions::askable(index, &request))
                .flatten()
            {
                let caller = questions::Caller {
                    principal: principal_name(context),
                    binding: ask.binding,
                };
                if let Some(state) = ask.state {
                    return questions
                        .resume(&state, ask.responses, context, timeout, caller)
                        .await;
                }
                // A stateless client cannot be asked directly: the backend's questions
                // become input-required rounds.
                if questions.enabled() {
                    let conn = self.conn(index, context).await?;
                    return questions
                        .call(conn, &member.name, request, context, &span, timeout, caller)
                        .await;
                }
            }
            let conn = self.conn(index, context).await?;
            let in_session = !stateless;
            forward::send(
                &conn,
                &member.name,
                request,
                context,
                &span,
                timeout,
                in_session,
            )
            .await
        }
        .await;
        result.map_err(|e| {
            tracing::debug!(backend = %member.name, fault = ?e.fault(), error = %e, "backend call failed");
            let e = ErrorData::from(e);
            super::traced::failed(&span, &e);
            e
        })
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
                        Ok(r) => expect(&m.name, r).map_err(ErrorData::from),
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
    context.extensions.remove::<::http::request::Parts>();
    context
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
                    let closed = up.close_idle(idle).await;
                    if closed > 0 {
                        tracing::debug!(backend = %m.name, closed, "closed idle pooled backend connections");
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
        lock(&self.shared.info).clone()
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        {
            let mut label = lock(&self.session.label);
            *label = match principal_of(&context) {
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
                        tracing::warn!(backend = %m.name, error = %e, fault = ?e.fault(), "backend unavailable for a new session");
                        infos.push((i, None));
                        first_error.get_or_insert(e);
                    }
                },
            }
        }
        if let Some(e) = first_error
            && !self.shared.ns.is_namespaced()
        {
            return Err(e.into());
        }
        let merged = self.shared.ns.merge_info(&infos);
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
                    tool.name = self.shared.ns.name(i, &tool.name).into();
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
        let Some((index, name)) = self.shared.ns.find_by_name(&full) else {
            return Err(CallError::UnknownTool(full).into());
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
                let result = d.call_tool(request, access_checked(context)).await;
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
                let mut r = match result {
                    ServerResult::CallToolResult(r) => r,
                    ServerResult::InputRequiredResult(r) => {
                        return Ok(CallToolResponse::InputRequired(r));
                    }
                    other => expect(&backend, other)?,
                };
                // A 2026-07-28 client needs it; rmcp drops it again for older ones.
                r.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(CallToolResponse::Complete(r))
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
                    prompt.name = self.shared.ns.name(i, &prompt.name);
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
        let Some((index, name)) = self.shared.ns.find_by_name(&full) else {
            return Err(CallError::UnknownPrompt(full).into());
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
                let mut r = match r {
                    ServerResult::GetPromptResult(r) => r,
                    ServerResult::InputRequiredResult(r) => {
                        return Ok(GetPromptResponse::InputRequired(r));
                    }
                    other => expect::<GetPromptResult>(&backend, other)?,
                };
                r.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(r.into())
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
                    r.uri = self.shared.ns.uri(i, &r.uri);
                    if self.shared.ns.is_namespaced() {
                        r.name = self.shared.ns.name(i, &r.name);
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
                    t.uri_template = self.shared.ns.uri(i, &t.uri_template);
                    if self.shared.ns.is_namespaced() {
                        t.name = self.shared.ns.name(i, &t.name);
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
        let Some((index, uri)) = self.shared.ns.find_by_uri(&full) else {
            return Err(CallError::UnknownResource(full).into());
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
                let mut r = match r {
                    ServerResult::ReadResourceResult(r) => r,
                    ServerResult::InputRequiredResult(r) => {
                        return Ok(ReadResourceResponse::InputRequired(r));
                    }
                    other => expect::<ReadResourceResult>(&backend, other)?,
                };
                r.result_type.get_or_insert(ResultType::COMPLETE);
                r.into()
            }
        };
        Ok(match result {
            ReadResourceResponse::Complete(mut r) if self.shared.ns.is_namespaced() => {
                for c in &mut r.contents {
                    rename_contents_uri(c, |u| self.shared.ns.uri(index, u));
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
        let Some((index, uri)) = self.shared.ns.find_by_uri(&full) else {
            return Err(CallError::UnknownResource(full).into());
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
        let Some((index, uri)) = self.shared.ns.find_by_uri(&full) else {
            return Err(CallError::UnknownResource(full).into());
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
                let Some((i, name)) = self.shared.ns.find_by_name(&p.name) else {
                    return Err(CallError::UnknownPrompt(p.name.clone()).into());
                };
                let mut p = p.clone();
                p.name = name.to_owned();
                (i, Reference::Prompt(p))
            }
            Reference::Resource(r) => {
                let Some((i, uri)) = self.shared.ns.find_by_uri(&r.uri) else {
                    return Err(CallError::UnknownTemplate(r.uri.clone()).into());
                };
                let mut r = r.clone();
                r.uri = uri.to_owned();
                (i, Reference::Resource(r))
            }
            _ => {
                return Err(CallError::UnsupportedReference.into());
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
                    other => Ok(expect(&backend, other)?),
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
            if let Some(conn) = slot.conn() {
                let _ = conn.peer().notify_roots_list_changed().await;
            }
        }
    }
}
