//! The MCP side of the edge: the rmcp Streamable HTTP service in front of a backend,
//! session ownership, and the stdio transport.

pub mod backends;
pub mod builtin;
pub mod legacy;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use backends::Backend;
pub use builtin::DocsBackend;
pub use sessions::{Ownership, SessionKind, SessionLimit, SessionRegistry};

use crate::config::Config;
use crate::host::HostName;

/// The Streamable HTTP session header (sealed by the edge, see `crate::cluster`).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// JSON-RPC error codes used by the edge (server-defined range).
pub mod codes {
    pub const UNAUTHORIZED: i64 = -32001;
    pub const FORBIDDEN: i64 = -32003;
    pub const NOT_FOUND: i64 = -32004;
    pub const RATE_LIMITED: i64 = -32029;
    pub const BUSY: i64 = -32000;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INVALID_PARAMS: i64 = -32602;
}

pub type McpService = StreamableHttpService<Backend, LocalSessionManager>;

/// Host names rmcp accepts in `Host`: the public names plus loopback (a loopback
/// name cannot be the target of DNS rebinding from a remote page).
pub fn allowed_hosts(config: &Config) -> Vec<String> {
    let mut hosts = config.server.public_hostnames.clone();
    for local in ["localhost", "127.0.0.1", "::1", "[::1]"] {
        if !hosts.iter().any(|h| h == local) {
            hosts.push(local.to_owned());
        }
    }
    hosts
}

/// Browser origins accepted: the configured ones, `https://` on every allowed host
/// (any port), and `http://` on loopback names only when TLS is off. The edge's own
/// check (`server::origin::origin_allowed`) applies the same rule first.
pub fn allowed_origins(config: &Config) -> Vec<String> {
    let plain_http = config.tls == crate::config::TlsConfig::Off;
    let mut origins = config.server.allowed_origins.clone();
    for host in allowed_hosts(config) {
        let host = HostName::new(&host);
        let entry = format!("https://{host}:*");
        if !origins.contains(&entry) {
            origins.push(entry);
        }
        let entry = format!("http://{host}:*");
        if plain_http && host.is_loopback() && !origins.contains(&entry) {
            origins.push(entry);
        }
    }
    origins
}

pub struct McpParts {
    pub service: McpService,
    pub session_manager: Arc<LocalSessionManager>,
    pub registry: Arc<SessionRegistry>,
}

pub fn build(config: &Config, backend: impl Into<Backend>, cancel: CancellationToken) -> McpParts {
    let backend: Backend = backend.into();
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = Some(config.sessions.idle_timeout);
    let mut manager = LocalSessionManager::default();
    manager.session_config = session_config;
    let session_manager = Arc::new(manager);
    let http_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(config))
        .with_allowed_origins(allowed_origins(config))
        .enforce_origin_validation()
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_max_request_body_bytes(config.server.max_body_bytes)
        // Stateless (2026-07-28) answers as one `application/json` body when the
        // result is the first message; rmcp falls back to an event stream when a
        // notification (progress, logs) comes first. Sessions are not affected.
        .with_json_response(true)
        .with_cancellation_token(cancel);
    let service = StreamableHttpService::new(
        move || Ok(backend.instance()),
        session_manager.clone(),
        http_config,
    );
    McpParts {
        service,
        session_manager,
        registry: SessionRegistry::new(
            config.sessions.max_total,
            config.sessions.max_per_principal,
        ),
    }
}

/// How often sessions rmcp has dropped are forgotten.
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(5);

impl McpParts {
    /// Sweep the session registry in the background (see [`sweep_sessions`]);
    /// abort the task to stop. When sessions ended since the last tick (idle timeout,
    /// DELETE, revocation), the freed heap is then given back to the system
    /// ([`crate::memory::trim_heap`], issue 23), on a blocking thread and awaited, so
    /// at most one trim per tick.
    pub fn spawn_session_sweeps(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.registry.clone();
        let manager = self.session_manager.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SESSION_SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sweep_sessions(&registry, &manager).await;
                if registry.take_ended() > 0 {
                    let _ = tokio::task::spawn_blocking(crate::memory::trim_heap).await;
                }
            }
        })
    }
}

/// Forget sessions rmcp has already dropped (idle timeout, transport closed), so
/// they stop counting against the caps.
pub async fn sweep_sessions(registry: &SessionRegistry, manager: &LocalSessionManager) {
    let live = manager.sessions.read().await;
    let gone: Vec<String> = registry
        .session_ids(SessionKind::StreamableHttp)
        .into_iter()
        .filter(|id| !live.contains_key(id.as_str()))
        .collect();
    drop(live);
    for id in gone {
        tracing::debug!(session = %id, "session expired");
        registry.remove(&id);
    }
}

/// May the caller of this request see and call `tool`? Every backend routes its
/// `tools/list` results and `tools/call`s through here. Over stdio there is no HTTP
/// request and no principal: a local process may use every tool.
pub fn tool_allowed(
    context: &rmcp::service::RequestContext<rmcp::RoleServer>,
    tool: &str,
) -> Result<(), crate::auth::ToolDenied> {
    let Some(parts) = context.extensions.get::<http::request::Parts>() else {
        return Ok(());
    };
    let principal = parts.extensions.get::<Arc<crate::auth::Principal>>();
    let policy = parts.extensions.get::<Arc<crate::auth::ToolPolicy>>();
    match (principal, policy) {
        (Some(principal), Some(policy)) => policy.check(principal, tool),
        _ => Ok(()),
    }
}

/// The JSON-RPC error for a refused tool call.
pub fn tool_denied_error(denied: &crate::auth::ToolDenied) -> rmcp::ErrorData {
    rmcp::ErrorData::new(
        rmcp::model::ErrorCode(codes::FORBIDDEN as i32),
        denied.to_string(),
        None,
    )
}

/// Close sessions by id (their credential was revoked).
pub async fn close_sessions(
    registry: &SessionRegistry,
    manager: &LocalSessionManager,
    ids: Vec<String>,
) {
    use rmcp::transport::streamable_http_server::SessionManager;
    for id in ids {
        // Not in the registry any more: it has already ended.
        let Some(kind) = registry.kind_of(&id) else {
            continue;
        };
        tracing::info!(session = %id, kind = kind.name(), "closing a session whose credential was revoked");
        match kind {
            SessionKind::LegacySse => {
                legacy::close(&id);
            }
            SessionKind::StreamableHttp => {
                let sid: rmcp::transport::streamable_http_server::session::SessionId =
                    id.clone().into();
                if let Err(e) = manager.close_session(&sid).await {
                    tracing::warn!(session = %id, error = %e, "closing session failed");
                }
            }
        }
        registry.remove(&id);
    }
}

/// The API keys file: a new key set is published whole, and the sessions of keys
/// it no longer holds are closed.
pub struct ApiKeysFile {
    pub path: std::path::PathBuf,
    pub ctx: crate::auth::KeyContext,
    pub auth: Arc<crate::auth::Authenticator>,
    pub registry: Arc<SessionRegistry>,
    pub manager: Arc<LocalSessionManager>,
}

#[async_trait::async_trait]
impl crate::reload::Reload for ApiKeysFile {
    fn kind(&self) -> &'static str {
        "api_keys"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Files(vec![self.path.clone()])
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        use crate::reload::ReloadError;
        let (path, ctx) = (self.path.clone(), self.ctx.clone());
        let store =
            tokio::task::spawn_blocking(move || crate::auth::KeyStore::load_file(&path, &ctx))
                .await
                .map_err(ReloadError::new)?
                .map_err(ReloadError::new)?;
        let keys = store.len();
        let revoked = self.auth.replace_keys(store);
        let ids = self.registry.sessions_using(&revoked);
        let closed = ids.len();
        close_sessions(&self.registry, &self.manager, ids).await;
        Ok(format!(
            "{keys} key(s) in force, {} revoked, {closed} session(s) closed",
            revoked.len()
        ))
    }
}
