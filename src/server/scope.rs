//! Step 6: a JWT without a tool's scopes gets the spec's step-up challenge (403
//! `insufficient_scope`), so the client can ask for them; the other tool refusals
//! (access lists) are JSON-RPC errors from the backend.

use super::error::EdgeError;
use super::inspect::McpCall;
use super::state::AppState;
use crate::auth::{Principal, ToolDenied};

pub fn step_up(
    state: &AppState,
    principal: &Principal,
    call: &McpCall,
    path: &str,
) -> Result<(), EdgeError> {
    let Some(tool) = &call.tool else {
        return Ok(());
    };
    match state.policy.check(principal, tool) {
        Err(ToolDenied::MissingScopes { missing, .. }) => Err(EdgeError::InsufficientScope {
            message: format!("tool {tool:?} needs scope(s) {}", missing.join(" ")),
            scope: state.policy.scopes_for(tool).join(" "),
            challenge: state.challenge.for_path(path),
        }),
        _ => Ok(()),
    }
}
