//! What every request handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;
use tokio_util::task::TaskTracker;

use super::error::Challenge;
use crate::auth::{Authenticator, ToolPolicy};
use crate::config::Config;
use crate::mcp::SessionRegistry;
use crate::ratelimit::RateLimits;

/// What every request handler shares: one `Arc`, so the clone each layer and
/// handler takes per request is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<RateLimits>,
    pub sessions: Arc<SessionRegistry>,
    pub ready: Arc<AtomicBool>,
    /// In-flight `/mcp` POSTs (until their response body ends), drained on shutdown.
    pub in_flight: TaskTracker,
    pub allowed_hosts: Arc<Vec<String>>,
    pub policy: Arc<ToolPolicy>,
    /// What 401/403 challenges point to.
    pub challenge: Challenge,
    /// RFC 9728 protected-resource metadata, served at the well-known paths.
    pub metadata: Arc<Value>,
    /// The served certificate's expiry, for `/ready` and metrics.
    pub cert: Arc<crate::certs::CertStatus>,
    /// Session-id sealing and the peer hop to other replicas.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// One record per tool call, resource read and prompt get.
    pub audit: Arc<crate::telemetry::audit::Audit>,
    /// Which backend serves a tool, prompt or resource (for audit and metrics).
    pub routing: Arc<crate::mcp::backends::Routing>,
    /// Request headers that carry a backend credential (`credentials.from_header`):
    /// taken off each request first thing, so nothing logs or forwards them.
    pub credential_headers: Arc<crate::mcp::backends::credentials::CredentialHeaders>,
    /// The edge's own authorization server (`[auth.oauth]`).
    pub oauth: Option<Arc<crate::oauth::OAuth>>,
    /// Refusals counted for the status page (only when it is on).
    pub refusals: Option<Arc<crate::status::Refusals>>,
}
