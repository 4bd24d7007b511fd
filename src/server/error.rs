//! The one place where edge errors become HTTP responses.
//!
//! Every refusal carries a JSON-RPC error object (with `id: null`, since the request
//! may not have been parsed) so MCP clients can show the message.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::json;

use crate::auth::AuthFailure;
use crate::mcp::SessionLimit;
use crate::ratelimit::Decision;

pub use crate::mcp::codes;

/// What a 401/403 challenge points clients to (MCP authorization, RFC 9728).
#[derive(Debug, Clone, Default)]
pub struct Challenge {
    /// URL of this resource's protected-resource metadata document; empty to omit
    /// (API keys only: there is no OAuth flow for clients to discover).
    pub resource_metadata: std::sync::Arc<str>,
    /// Scopes to request (space separated); empty to omit.
    pub scope: std::sync::Arc<str>,
    /// Other protected paths (`/sse`, `/messages`) and their own metadata URLs: a
    /// client checks the document's `resource` against the URL it used (RFC 9728 §3.3).
    pub by_path: std::sync::Arc<[(String, std::sync::Arc<str>)]>,
}

fn quoted(text: &str) -> String {
    text.replace(['"', '\\'], "'")
}

impl Challenge {
    /// The challenge for a request to `path`.
    pub fn for_path(&self, path: &str) -> Challenge {
        let own = self.by_path.iter().find(|(prefix, _)| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        match own {
            Some((_, url)) => Challenge {
                resource_metadata: url.clone(),
                ..self.clone()
            },
            None => self.clone(),
        }
    }

    fn header(&self, error: Option<(&str, &str)>, scope: &str) -> String {
        let mut parts = vec!["Bearer realm=\"mcp-edge\"".to_owned()];
        if let Some((code, description)) = error {
            parts.push(format!("error=\"{code}\""));
            parts.push(format!("error_description=\"{}\"", quoted(description)));
        }
        if !self.resource_metadata.is_empty() {
            parts.push(format!("resource_metadata=\"{}\"", self.resource_metadata));
        }
        if !scope.is_empty() {
            parts.push(format!("scope=\"{}\"", quoted(scope)));
        }
        parts.join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    Unauthorized(AuthFailure, Challenge),
    /// The token is valid but lacks scopes (RFC 6750 `insufficient_scope`).
    #[error("{message}")]
    InsufficientScope {
        message: String,
        scope: String,
        challenge: Challenge,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("rate limit exceeded")]
    RateLimited(Decision),
    #[error("session not found: start a new session with initialize")]
    SessionNotFound,
    /// A retry's `requestState` names a backend question held by a replica that
    /// cannot be reached (the spec's error for a state that cannot be used).
    #[error("Invalid or expired requestState")]
    RequestStateRefused,
    #[error("{0}")]
    SessionLimit(SessionLimit),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    RequestTimeout(crate::conn::BodyTimeout),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The shared rate-limit store is unreachable and the config says deny.
    #[error("the rate limiter is unavailable; try again shortly")]
    LimiterUnavailable(std::time::Duration),
    /// A request on the peer listener without a valid HMAC (never a client's credential).
    #[error("peer request not authenticated")]
    PeerUnauthorized,
}

impl EdgeError {
    /// A short machine-readable reason, for traces and the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            EdgeError::Unauthorized(failure, _) => failure.reason(),
            EdgeError::PeerUnauthorized => "peer_unauthorized",
            EdgeError::InsufficientScope { .. } => "insufficient_scope",
            EdgeError::Forbidden(_) => "forbidden",
            EdgeError::RateLimited(_) => "rate_limited",
            EdgeError::SessionNotFound => "session_not_found",
            EdgeError::RequestStateRefused => "request_state_refused",
            EdgeError::SessionLimit(SessionLimit::PerPrincipal(_)) => "session_limit_principal",
            EdgeError::SessionLimit(SessionLimit::Total(_)) => "session_limit_total",
            EdgeError::PayloadTooLarge(_) => "payload_too_large",
            EdgeError::RequestTimeout(_) => "request_timeout",
            EdgeError::BadRequest(_) => "bad_request",
            EdgeError::NotFound => "not_found",
            EdgeError::ShuttingDown => "shutting_down",
            EdgeError::LimiterUnavailable(_) => "limiter_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::Unauthorized(..) | EdgeError::PeerUnauthorized => StatusCode::UNAUTHORIZED,
            EdgeError::Forbidden(_) | EdgeError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            EdgeError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::SessionNotFound | EdgeError::NotFound => StatusCode::NOT_FOUND,
            EdgeError::SessionLimit(SessionLimit::PerPrincipal(_)) => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::SessionLimit(SessionLimit::Total(_))
            | EdgeError::ShuttingDown
            | EdgeError::LimiterUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            EdgeError::BadRequest(_) | EdgeError::RequestStateRefused => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> i64 {
        match self {
            EdgeError::Unauthorized(..) | EdgeError::PeerUnauthorized => codes::UNAUTHORIZED,
            EdgeError::Forbidden(_) | EdgeError::InsufficientScope { .. } => codes::FORBIDDEN,
            EdgeError::RateLimited(_) | EdgeError::SessionLimit(SessionLimit::PerPrincipal(_)) => {
                codes::RATE_LIMITED
            }
            EdgeError::SessionNotFound | EdgeError::NotFound => codes::NOT_FOUND,
            EdgeError::SessionLimit(SessionLimit::Total(_))
            | EdgeError::ShuttingDown
            | EdgeError::LimiterUnavailable(_) => codes::BUSY,
            EdgeError::PayloadTooLarge(_)
            | EdgeError::BadRequest(_)
            | EdgeError::RequestTimeout(_) => codes::INVALID_REQUEST,
            EdgeError::RequestStateRefused => codes::INVALID_PARAMS,
        }
    }
}

// Parsed once: a `&str` name is parsed again on every insert, on every answer.
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `RateLimit-*` headers (IETF draft) for a decision; also set on allowed requests.
pub fn rate_limit_headers(headers: &mut http::HeaderMap, d: &Decision) {
    let secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(d.limit));
    headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(d.remaining));
    headers.insert(RATELIMIT_RESET.clone(), HeaderValue::from(secs(d.reset)));
    if let Ok(v) = HeaderValue::from_str(&format!("{};w={}", d.limit, secs(d.window).max(1))) {
        headers.insert(RATELIMIT_POLICY.clone(), v);
    }
    if let Some(wait) = d.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs(wait).max(1)));
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": self.code(), "message": self.to_string() },
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            EdgeError::Unauthorized(failure, challenge) => {
                // RFC 6750: no error code when credentials were simply absent.
                let error = match failure {
                    AuthFailure::Missing => None,
                    other => Some(("invalid_token", other.to_string())),
                };
                let value = challenge.header(
                    error.as_ref().map(|(c, d)| (*c, d.as_str())),
                    &challenge.scope,
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            EdgeError::InsufficientScope {
                message,
                scope,
                challenge,
            } => {
                let value = challenge.header(Some(("insufficient_scope", message)), scope);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            EdgeError::RateLimited(decision) => rate_limit_headers(headers, decision),
            EdgeError::LimiterUnavailable(wait) => {
                let secs = wait.as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            EdgeError::SessionLimit(SessionLimit::Total(_)) | EdgeError::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
