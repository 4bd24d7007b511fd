//! Why a proxied request failed, and whose fault that was: the client's (a name no
//! backend has), a backend's (it failed, crashed, timed out or refused us) or the
//! edge's own (a cap it enforces, a child it could not start). [`ErrorData::from`] is
//! the one place these become the JSON-RPC error the client sees.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use rmcp::service::ServiceError;

use super::super::credentials::CredentialError;
use super::super::process::SpawnError;

/// Who a failure is to be blamed on (for logs; the client sees code and message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// The request named something that does not exist, or was cancelled.
    Client,
    /// The upstream server failed, crashed, timed out or answered with an error.
    #[default]
    Backend,
    /// The edge itself: a limit it enforces, a process it could not start, its config.
    Edge,
}

/// A proxied request that failed. The messages are what clients have always seen.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("unknown prompt {0:?}")]
    UnknownPrompt(String),
    #[error("unknown resource {0:?}")]
    UnknownResource(String),
    #[error("unknown resource template {0:?}")]
    UnknownTemplate(String),
    #[error("unsupported completion reference")]
    UnsupportedReference,
    #[error("request cancelled")]
    Cancelled,

    /// The upstream's own JSON-RPC error, passed on as it came.
    #[error("{}", .0.message)]
    Upstream(ErrorData),
    #[error("backend {backend:?} is unavailable: {why}")]
    Handshake { backend: Arc<str>, why: String },
    #[error(
        "backend {backend:?} is unavailable: no MCP handshake within {} (proxy.spawn_timeout)",
        humantime::format_duration(*.timeout)
    )]
    NoHandshake {
        backend: Arc<str>,
        timeout: Duration,
    },
    /// A restart is backing off after `last` (whose fault is `fault`).
    #[error("backend {backend:?} is unavailable: {last} (restarting in {in_ms}ms)")]
    Restarting {
        backend: Arc<str>,
        last: String,
        fault: Fault,
        in_ms: u128,
    },
    #[error(
        "backend {backend:?} did not answer within {} (proxy.call_timeout); the call was cancelled",
        humantime::format_duration(*.timeout)
    )]
    Timeout {
        backend: Arc<str>,
        timeout: Duration,
    },
    #[error(
        "backend {backend:?} went away while handling the request (it is restarted on the next call)"
    )]
    WentAway { backend: Arc<str> },
    #[error("backend {backend:?} returned an unexpected result: {detail}")]
    Unexpected { backend: Arc<str>, detail: String },
    #[error("backend {backend:?}: {detail}")]
    Failed { backend: Arc<str>, detail: String },

    #[error("backend {backend:?} is unavailable: {source}")]
    Spawn {
        backend: Arc<str>,
        source: SpawnError,
    },
    /// The HTTP upstream's `credential_file` could not be read on connect.
    #[error("backend {backend:?} is unavailable: {why}")]
    Credential { backend: Arc<str>, why: String },
    /// A per-principal credential is missing or unusable: no child was started.
    #[error("backend {backend:?}: {source}")]
    Credentials {
        backend: Arc<str>,
        source: CredentialError,
    },
    #[error("not an upstream backend")]
    NotUpstream,

    /// A `requestState` of the edge's that does not open, is another principal's or
    /// request's, expired or was used (the reason is logged, never shown).
    #[error("Invalid or expired requestState")]
    RequestState,
    #[error("inputResponses[{key:?}] is not a valid answer to the question: {detail}")]
    BadAnswer { key: String, detail: String },
    #[error(
        "the edge already holds its maximum of {0} backend questions awaiting an answer (proxy.max_pending_inputs); try again shortly"
    )]
    TooManyQuestions(usize),
}

impl CallError {
    /// A failed exchange with `backend` (`timeout`: the `proxy.call_timeout` it had).
    pub fn service(backend: &Arc<str>, e: ServiceError, timeout: Duration) -> CallError {
        let backend = backend.clone();
        match e {
            ServiceError::McpError(e) => CallError::Upstream(e),
            ServiceError::Timeout { .. } => CallError::Timeout { backend, timeout },
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                CallError::WentAway { backend }
            }
            other => CallError::Failed {
                backend,
                detail: other.to_string(),
            },
        }
    }

    /// The edge runs `proxy.max_children` already (room may be made, and it is no
    /// reason to back off restarting the backend).
    pub fn is_at_child_cap(&self) -> bool {
        matches!(
            self,
            CallError::Spawn {
                source: SpawnError::TooMany(_),
                ..
            }
        )
    }

    pub fn fault(&self) -> Fault {
        use CallError::*;
        match self {
            UnknownTool(_)
            | UnknownPrompt(_)
            | UnknownResource(_)
            | UnknownTemplate(_)
            | UnsupportedReference
            | Cancelled
            | RequestState
            | BadAnswer { .. } => Fault::Client,
            Upstream(_)
            | Handshake { .. }
            | NoHandshake { .. }
            | Timeout { .. }
            | WentAway { .. }
            | Unexpected { .. }
            | Failed { .. } => Fault::Backend,
            Restarting { fault, .. } => *fault,
            Credentials { source, .. } if source.is_the_principals() => Fault::Client,
            Spawn { .. }
            | Credential { .. }
            | Credentials { .. }
            | NotUpstream
            | TooManyQuestions(_) => Fault::Edge,
        }
    }
}

impl From<CallError> for ErrorData {
    fn from(e: CallError) -> ErrorData {
        let code = match &e {
            CallError::UnknownResource(_) => ErrorCode::RESOURCE_NOT_FOUND,
            CallError::UnknownTool(_)
            | CallError::UnknownPrompt(_)
            | CallError::UnknownTemplate(_)
            | CallError::UnsupportedReference
            | CallError::RequestState
            | CallError::BadAnswer { .. } => ErrorCode::INVALID_PARAMS,
            // The principal's own setup is missing: nothing a retry or the backend fixes.
            CallError::Credentials { source, .. } if source.is_the_principals() => {
                ErrorCode::INVALID_REQUEST
            }
            CallError::TooManyQuestions(_) => ErrorCode(crate::mcp::codes::BUSY as i32),
            _ => ErrorCode::INTERNAL_ERROR,
        };
        match e {
            CallError::Upstream(data) => data,
            CallError::Credentials { ref source, .. } => {
                ErrorData::new(code, e.to_string(), source.data())
            }
            // As the SDKs refuse a requestState (the Python SDK's wire form).
            CallError::RequestState => ErrorData::new(
                code,
                e.to_string(),
                Some(serde_json::json!({"reason": "invalid_request_state"})),
            ),
            e => ErrorData::new(code, e.to_string(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_messages_and_faults_clients_have_always_seen() {
        let b: Arc<str> = "py".into();
        let cases = [
            (
                CallError::UnknownTool("x__y".into()),
                ErrorCode::INVALID_PARAMS,
                "unknown tool \"x__y\"",
                Fault::Client,
            ),
            (
                CallError::UnknownResource("r".into()),
                ErrorCode::RESOURCE_NOT_FOUND,
                "unknown resource \"r\"",
                Fault::Client,
            ),
            (
                CallError::WentAway { backend: b.clone() },
                ErrorCode::INTERNAL_ERROR,
                "backend \"py\" went away while handling the request (it is restarted on the next call)",
                Fault::Backend,
            ),
            (
                CallError::Timeout {
                    backend: b.clone(),
                    timeout: Duration::from_secs(2),
                },
                ErrorCode::INTERNAL_ERROR,
                "backend \"py\" did not answer within 2s (proxy.call_timeout); the call was cancelled",
                Fault::Backend,
            ),
            (
                CallError::Spawn {
                    backend: b.clone(),
                    source: SpawnError::TooMany(3),
                },
                ErrorCode::INTERNAL_ERROR,
                "backend \"py\" is unavailable: the edge already runs its maximum of 3 backend processes (proxy.max_children)",
                Fault::Edge,
            ),
            (
                CallError::Restarting {
                    backend: b.clone(),
                    last: "it exited".into(),
                    fault: Fault::Backend,
                    in_ms: 150,
                },
                ErrorCode::INTERNAL_ERROR,
                "backend \"py\" is unavailable: it exited (restarting in 150ms)",
                Fault::Backend,
            ),
        ];
        for (e, code, message, fault) in cases {
            assert_eq!(e.fault(), fault, "{e}");
            let data = ErrorData::from(e);
            assert_eq!((data.code, &*data.message), (code, message));
            assert!(data.data.is_none());
        }
    }

    #[test]
    fn an_upstream_error_passes_through_as_it_came() {
        let upstream = ErrorData::invalid_params("bad argument", Some(serde_json::json!({"x": 1})));
        let e = CallError::service(
            &"py".into(),
            ServiceError::McpError(upstream.clone()),
            Duration::ZERO,
        );
        assert_eq!(e.fault(), Fault::Backend);
        assert_eq!(ErrorData::from(e), upstream);
    }
}
