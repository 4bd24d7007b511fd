//! Step 5: the principal's rate limit. Calls (requests that do work) spend the call
//! budget; session set-up, notifications and streams spend the protocol budget.

use std::net::IpAddr;

use axum::response::Response;

use super::access_log::RequestLog;
use super::error::{EdgeError, rate_limit_headers};
use super::inspect::McpCall;
use super::state::AppState;
use crate::auth::Principal;
use crate::ratelimit::{Class, Decision};

/// A call let through, and what its `RateLimit-*` headers will say.
pub struct Admitted {
    class: Class,
    decision: Decision,
}

pub async fn check(
    state: &AppState,
    principal: &Principal,
    ip: IpAddr,
    call: &McpCall,
    extensions: &http::Extensions,
) -> Result<Admitted, EdgeError> {
    let class = match call.counted {
        true => Class::Call,
        false => Class::Protocol,
    };
    let decision = state
        .limits
        .check_principal(principal, ip, class)
        .await
        .map_err(|unavailable| {
            RequestLog::note_in(extensions, |l| l.rate_limited = true);
            EdgeError::LimiterUnavailable(unavailable.retry_after)
        })?;
    if !decision.allowed {
        RequestLog::note_in(extensions, |l| l.rate_limited = true);
        return Err(EdgeError::RateLimited(decision));
    }
    Ok(Admitted { class, decision })
}

impl Admitted {
    /// The headers describe the call budget; protocol traffic does not touch it.
    pub fn annotate(&self, response: &mut Response) {
        if self.class == Class::Call {
            rate_limit_headers(response.headers_mut(), &self.decision);
        }
    }
}
