//! Upstreams as child processes: start one under the supervisor (which bounds and
//! reaps them) and speak MCP over its stdin/stdout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::transport::async_rw::AsyncRwTransport;

use super::super::credentials::Credentials;
use super::super::link::{Conn, Forwarder, Ordered};
use super::super::process::{StdioSpec, Supervisor};
use super::error::CallError;

/// Start a child for `spec` (for `principal`; empty for nobody in particular) and do
/// the MCP handshake with it within `timeout`.
pub async fn connect(
    backend: &Arc<str>,
    principal: &str,
    spec: &StdioSpec,
    credentials: &Credentials,
    supervisor: &Supervisor,
    forwarder: Forwarder,
    timeout: Duration,
) -> Result<Conn, CallError> {
    let link = forwarder.link.clone();
    let (child, stdout, stdin) = supervisor
        .spawn(backend, principal, spec, credentials, link.label.clone())
        .map_err(|source| CallError::Spawn {
            backend: backend.clone(),
            source,
        })?;
    let transport = Ordered::new(AsyncRwTransport::new_client(stdout, stdin), link.clone());
    match tokio::time::timeout(timeout, rmcp::serve_client(forwarder, transport)).await {
        Ok(Ok(service)) => Ok(Conn {
            service,
            link,
            child: Some(child),
            last_used: Mutex::new(Instant::now()),
            started: Instant::now(),
        }),
        Ok(Err(e)) => Err(CallError::Handshake {
            backend: backend.clone(),
            why: format!("the MCP handshake with the process failed: {e}"),
        }),
        Err(_) => Err(CallError::NoHandshake {
            backend: backend.clone(),
            timeout,
        }),
    }
}
