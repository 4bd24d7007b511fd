//! What answers MCP requests behind the edge: a closed set of backends.
//!
//! - [`Backend::Docs`]: the built-in docs tools (the default when no `[[backends]]`
//!   are configured).
//! - [`Backend::Proxy`]: one or more MCP servers reached as stdio child processes or
//!   over Streamable HTTP, optionally together with the docs tools, namespaced when
//!   there are several. See `README.md` in this folder.

#![allow(deprecated)] // set_level and subscribe are deprecated in 2026-07-28 but still forwarded

pub mod asker;
pub mod check;
pub mod credentials;
pub mod link;
pub mod process;
pub mod proxy;
pub mod request_state;
pub mod traced;

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

pub use check::{FileProblem, check_files};
pub use process::live_children;
pub use proxy::{Proxy, ProxyError};

use super::DocsBackend;
use crate::config::{BackendKind, Config};

/// Which backend serves a name the client sees, from the config alone (for the
/// audit trail and metrics, which run outside the proxy).
#[derive(Debug, Clone)]
pub struct Routing {
    names: Vec<Arc<str>>,
    namespaced: bool,
}

impl Routing {
    pub fn from_config(config: &Config) -> Routing {
        let names: Vec<Arc<str>> = if config.backends.is_empty() {
            vec!["docs".into()]
        } else {
            config
                .backends
                .iter()
                .map(|b| b.name.as_str().into())
                .collect()
        };
        Routing {
            namespaced: names.len() > 1,
            names,
        }
    }

    /// The backend of a tool or prompt name, or (`uri = true`) a resource URI.
    pub fn backend_of(&self, name: &str, uri: bool) -> Option<&str> {
        if !self.namespaced {
            return self.names.first().map(|n| &**n);
        }
        self.names.iter().map(|n| &**n).find(|n| {
            name.strip_prefix(n).is_some_and(|rest| match uri {
                true => rest.starts_with(proxy::URI_SEP),
                false => rest.starts_with(proxy::NAME_SEP),
            })
        })
    }
}

#[derive(Clone)]
pub enum Backend {
    Docs(DocsBackend),
    Proxy(Proxy),
}

impl From<DocsBackend> for Backend {
    fn from(d: DocsBackend) -> Backend {
        Backend::Docs(d)
    }
}

impl Backend {
    /// Whether `config` needs the docs index (no backends, or a `kind = "docs"` one).
    pub fn needs_docs(config: &Config) -> bool {
        config.backends.is_empty()
            || config
                .backends
                .iter()
                .any(|b| matches!(b.kind, BackendKind::Docs))
    }

    /// The backend `config` describes.
    pub fn from_config(config: &Config, docs: Option<DocsBackend>) -> Result<Backend, ProxyError> {
        if config.backends.is_empty() {
            return docs.map(Backend::Docs).ok_or(ProxyError::Backend {
                index: 0,
                name: "docs".into(),
                message: "the docs index was not built".into(),
            });
        }
        Ok(Backend::Proxy(Proxy::new(
            &config.backends,
            &config.proxy,
            docs,
        )?))
    }

    /// The handler for one new session or stateless request.
    pub fn instance(&self) -> Backend {
        match self {
            Backend::Docs(d) => Backend::Docs(d.clone()),
            Backend::Proxy(p) => Backend::Proxy(p.instance()),
        }
    }

    /// Let stateless clients answer backends' questions, sealing their `requestState`
    /// with `sealer` (the cluster's key ring).
    pub fn set_sealer(&self, sealer: Arc<dyn request_state::Sealer>) {
        if let Backend::Proxy(p) = self {
            p.set_sealer(sealer);
        }
    }

    /// Reach every backend once at start (logs what is wrong; never fatal).
    pub async fn probe(&self) {
        if let Backend::Proxy(p) = self {
            p.probe().await;
        }
    }

    /// Live backend child processes of this backend (for the metrics gauge).
    pub fn live_children(&self) -> Option<Arc<std::sync::atomic::AtomicUsize>> {
        match self {
            Backend::Docs(_) => None,
            Backend::Proxy(p) => Some(p.live_children()),
        }
    }

    /// Stop all child processes and wait (bounded) until they are reaped.
    pub async fn shutdown(&self, timeout: Duration) {
        if let Backend::Proxy(p) = self {
            p.shutdown(timeout).await;
        }
    }
}

/// Calls the same method on either backend. A method that awaits (`both!(self,
/// b => b.call(..).await)`) awaits it boxed: rmcp spawns a task per request whose
/// future holds the largest of these, and tokio copies a task's future into
/// place and over again when it completes, so an unboxed proxy call (tens of
/// kilobytes of state) cost every request a fifth of its instructions in memcpy.
macro_rules! both {
    ($self:ident, $b:ident => $_b:ident . $method:ident ( $($arg:expr),* ).await) => {
        match $self {
            Backend::Docs($b) => Box::pin($b.$method($($arg),*)).await,
            Backend::Proxy($b) => Box::pin($b.$method($($arg),*)).await,
        }
    };
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Backend::Docs($b) => $e,
            Backend::Proxy($b) => $e,
        }
    };
}

impl ServerHandler for Backend {
    fn get_info(&self) -> ServerConfig {
        both!(self, b => b.get_info())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        both!(self, b => b.initialize(request, context).await)
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        both!(self, b => b.ping(context).await)
    }

    // The docs backend and the proxy both check every tool with `mcp::tool_allowed`
    // (the proxy with the namespaced names the client sees).
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        both!(self, b => b.list_tools(request, context).await)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        match self {
            Backend::Docs(d) => d.get_tool(name),
            Backend::Proxy(_) => None,
        }
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self {
            Backend::Docs(d) => {
                // Held, not entered, for the call (see `server::access_log`).
                let span = traced::backend_span(&context, "tools/call", "docs", "docs");
                let result = Box::pin(d.call_tool(request, context)).await;
                if let Err(e) = &result {
                    traced::failed(&span, e);
                }
                result
            }
            Backend::Proxy(p) => Box::pin(p.call_tool(request, context)).await,
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        both!(self, b => b.list_prompts(request, context).await)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        both!(self, b => b.get_prompt(request, context).await)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        both!(self, b => b.list_resources(request, context).await)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        both!(self, b => b.list_resource_templates(request, context).await)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        both!(self, b => b.read_resource(request, context).await)
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        both!(self, b => b.subscribe(request, context).await)
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        both!(self, b => b.unsubscribe(request, context).await)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        both!(self, b => b.complete(request, context).await)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        both!(self, b => b.set_level(request, context).await)
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        both!(self, b => b.on_roots_list_changed(context).await)
    }
}
