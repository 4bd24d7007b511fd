//! Metrics derived from the access-log middleware: request counts, auth failures
//! and rate limiting (a call's latency is recorded by `server::access_log` once
//! its answer has been sent).

/// What the middleware chain learned about one request, as far as metrics care.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome<'a> {
    /// `AuthFailure::reason`, or `locked_out`.
    pub auth: Option<&'static str>,
    pub rate_limited: bool,
    pub mcp_method: Option<&'a str>,
    pub tool: Option<&'a str>,
}

/// Count one answered request from what the middleware chain noted about it.
pub fn record_request(path: &str, status: u16, fields: &Outcome<'_>) {
    super::http_request(path, status);
    match fields.auth {
        // Refused before the key was checked: the IP is over its failed-auth budget.
        Some("locked_out") => super::rate_limited("failed_auth"),
        Some(reason) => {
            super::auth_failure(reason);
            if status == 429 {
                super::rate_limited("failed_auth");
            }
        }
        None => {}
    }
    if fields.rate_limited {
        super::rate_limited("principal");
    }
}
