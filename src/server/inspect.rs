//! Step 4: read a POST's body once (bounded by `server.max_body_bytes`) and look at
//! its JSON-RPC envelope, borrowed from the bytes: the method (calls and protocol
//! traffic are budgeted apart), the tool (scope step-up, logs, metrics). The bytes go
//! back into the request for rmcp, which parses the message itself.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http::{Method, header};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::task::task_tracker::TaskTrackerToken;

use sha2::Digest;

use super::error::EdgeError;
use super::state::AppState;
use crate::telemetry::otel::TraceHeaders;

/// The JSON-RPC method and tool of a POST body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct McpCall {
    pub method: Option<String>,
    pub tool: Option<String>,
    /// Counted against the principal's call budget: some message in the body asks
    /// for work (not `initialize`, `ping`, a notification or a response).
    pub counted: bool,
    /// An audited call (`tools/call`, `resources/read`, `prompts/get`): what it names.
    pub audited: Option<Audited>,
    /// The W3C trace context in the message's `params._meta`.
    pub trace: TraceHeaders,
    /// The edge's own `requestState` on a retry (an audited call answering a backend's
    /// question): step 7 sends the request to the replica holding that question.
    pub request_state: Option<String>,
}

/// What the audit trail records of a call's request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Audited {
    /// The tool, prompt or resource URI.
    pub name: Option<String>,
    /// SHA-256 (hex) of the `arguments` JSON text as sent.
    pub arguments_sha256: Option<String>,
    /// The text itself, only when `audit.log_arguments` is on.
    pub arguments: Option<String>,
    pub request_bytes: u64,
}

/// The methods the audit trail records.
pub fn is_audited(method: &str) -> bool {
    matches!(method, "tools/call" | "resources/read" | "prompts/get")
}

/// The fields of one JSON-RPC message the edge looks at, borrowed from the body.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "_meta")]
    meta: Option<TraceMeta<'a>>,
    #[serde(borrow, default, rename = "requestState")]
    request_state: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TraceMeta<'a> {
    #[serde(borrow, default)]
    traceparent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tracestate: Option<Cow<'a, str>>,
}

/// Requests that keep a session going rather than doing work.
fn is_protocol(method: &str) -> bool {
    matches!(method, "initialize" | "ping" | "logging/setLevel")
        || method.starts_with("notifications/")
}

/// Is this JSON text a batch (an array) rather than one message?
pub fn is_batch(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// What a body asks for; anything unreadable is left for rmcp to refuse.
pub fn inspect(body: &[u8], keep_arguments: bool) -> McpCall {
    let messages = if is_batch(body) {
        serde_json::from_slice::<Vec<Message<'_>>>(body).unwrap_or_default()
    } else {
        serde_json::from_slice::<Message<'_>>(body)
            .map(|m| vec![m])
            .unwrap_or_default()
    };
    let counted = messages
        .iter()
        .any(|m| m.method.as_deref().is_some_and(|m| !is_protocol(m)));
    let Some(first) = messages.first() else {
        return McpCall::default();
    };
    let method = first.method.as_deref().map(str::to_owned);
    let params = first
        .params
        .and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok());
    let tool = (method.as_deref() == Some("tools/call"))
        .then(|| params.as_ref()?.name.as_deref().map(str::to_owned))
        .flatten();
    let audited = method.as_deref().filter(|m| is_audited(m)).map(|m| {
        let params = params.as_ref();
        let name = match m {
            "resources/read" => params.and_then(|p| p.uri.as_deref()),
            _ => params.and_then(|p| p.name.as_deref()),
        };
        let arguments = params.and_then(|p| p.arguments).map(RawValue::get);
        Audited {
            name: name.map(str::to_owned),
            arguments_sha256: arguments.map(|a| hex::encode(sha2::Sha256::digest(a.as_bytes()))),
            arguments: arguments.filter(|_| keep_arguments).map(str::to_owned),
            request_bytes: body.len() as u64,
        }
    });
    let request_state = params
        .as_ref()
        .filter(|_| audited.is_some())
        .and_then(|p| p.request_state.as_deref())
        .filter(|s| crate::mcp::backends::request_state::is_edge_state(s))
        .map(str::to_owned);
    let trace = params
        .and_then(|p| p.meta)
        .map(|m| TraceHeaders {
            traceparent: m.traceparent.map(Cow::into_owned),
            tracestate: m.tracestate.map(Cow::into_owned),
        })
        .unwrap_or_default();
    McpCall {
        method,
        tool,
        counted,
        audited,
        trace,
        request_state,
    }
}

/// A POST read and inspected; other methods pass as they are.
pub struct Read {
    pub request: Request,
    pub call: McpCall,
    /// Held until the answer has been sent: shutdown waits for in-flight calls.
    pub in_flight: Option<TaskTrackerToken>,
}

pub async fn read_call(state: &AppState, request: Request) -> Result<Read, EdgeError> {
    if request.method() != Method::POST {
        return Ok(Read {
            request,
            call: McpCall::default(),
            in_flight: None,
        });
    }
    if state.in_flight.is_closed() {
        return Err(EdgeError::ShuttingDown);
    }
    // Taken before the body is read: a call still uploading when SIGTERM arrives
    // is in flight too.
    let token = state.in_flight.token();
    let limit = state.config.server.max_body_bytes;
    // Refused from the header, without waiting for bytes that will be refused.
    if declared_length(request.headers()).is_some_and(|n| n > limit as u64) {
        return Err(EdgeError::PayloadTooLarge(limit));
    }
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        match crate::conn::is_body_timeout(&e) {
            // Stalled past `server.body_read_timeout`.
            true => EdgeError::RequestTimeout(crate::conn::BodyTimeout(
                state.config.server.connections.body_read_timeout,
            )),
            // Too large, or the client went away.
            false => EdgeError::PayloadTooLarge(limit),
        }
    })?;
    let call = inspect(&bytes, state.audit.log_arguments());
    Ok(Read {
        request: Request::from_parts(parts, Body::from(bytes)),
        call,
        in_flight: Some(token),
    })
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
