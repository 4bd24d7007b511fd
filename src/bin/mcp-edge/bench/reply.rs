//! Reading and checking replies, and the failures they turn into.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::sse::SseParser;

/// A reply larger than this is refused (a benchmark reply should be small).
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
const RATE_LIMITED: &str = "HTTP 429 rate limited: raise the key's rate= in the keys file \
     (dev profile: MCP_RATE_LIMIT / MCP_RATE_BURST) for benchmarking";

/// One failed request: `key` is the message failures are grouped by (no ids),
/// `detail` the first body seen for it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) key: String,
    pub(super) detail: Option<String>,
    pub(super) rate_limited: bool,
}

impl Failure {
    pub(super) fn new(key: impl Into<String>) -> Failure {
        Failure {
            key: key.into(),
            detail: None,
            rate_limited: false,
        }
    }
}

pub(super) async fn http_failure(status: StatusCode, response: reqwest::Response) -> Failure {
    let body = response.text().await.unwrap_or_default();
    // The edge also answers 429 when a principal holds too many sessions; only a
    // rate-limit refusal gets the rate-limit advice.
    if status == StatusCode::TOO_MANY_REQUESTS && !body.to_ascii_lowercase().contains("session") {
        return Failure {
            key: RATE_LIMITED.into(),
            detail: None,
            rate_limited: true,
        };
    }
    let error = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    // The whole body is shown when the summary may leave something out.
    let show_body = error
        .as_ref()
        .is_none_or(|e| !e.is_object() || e.get("data").is_some());
    let summary = error
        .map(|err| match err {
            Value::Object(o) => {
                let code = o.get("code").map(|c| format!("{c} ")).unwrap_or_default();
                let msg = o.get("message").and_then(Value::as_str).unwrap_or("");
                format!("{code}{msg}")
            }
            other => other.to_string(),
        })
        .unwrap_or_else(|| truncate(body.trim(), 200));
    Failure {
        key: format!("HTTP {status}: {summary}"),
        detail: (show_body && !body.trim().is_empty()).then(|| truncate(body.trim(), 1000)),
        rate_limited: false,
    }
}

/// Read a POST reply (SSE or JSON) up to the JSON-RPC message with `id`.
/// Returns the message and the instant it was parsed; the rest of the body is
/// drained (untimed) so the connection can be reused.
pub(super) async fn read_reply(
    mut response: reqwest::Response,
    id: u64,
) -> Result<(Value, Instant), Failure> {
    let status = response.status();
    if !status.is_success() {
        return Err(http_failure(status, response).await);
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_error =
        |e: reqwest::Error| Failure::new(format!("reading reply: {}", error_chain(&e)));
    if content_type.starts_with("text/event-stream") {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut size = 0usize;
        let mut ended = false;
        loop {
            match response.chunk().await.map_err(body_error)? {
                Some(chunk) => {
                    size += chunk.len();
                    if size > MAX_REPLY_BYTES {
                        return Err(Failure::new("reply larger than 16 MiB"));
                    }
                    parser.push(&chunk, &mut events);
                }
                None => {
                    parser.finish(&mut events);
                    ended = true;
                }
            }
            for data in events.drain(..) {
                if let Some(message) = find_message(&data, id)? {
                    let parsed_at = Instant::now();
                    if !ended {
                        drain(response).await;
                    }
                    return Ok((message, parsed_at));
                }
            }
            if ended {
                return Err(Failure::new("SSE stream ended without the reply"));
            }
        }
    } else if content_type.starts_with("application/json") {
        let bytes = response.bytes().await.map_err(body_error)?;
        let text = String::from_utf8_lossy(&bytes);
        match find_message(&text, id)? {
            Some(message) => Ok((message, Instant::now())),
            None => Err(Failure {
                key: "JSON reply holds no message with the request id".into(),
                detail: Some(truncate(&text, 1000)),
                rate_limited: false,
            }),
        }
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(Failure {
            key: format!("unexpected reply Content-Type {content_type:?}"),
            detail: Some(truncate(&body, 1000)),
            rate_limited: false,
        })
    }
}

async fn drain(mut response: reqwest::Response) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
}

/// Parse one SSE data payload (a message or a batch) and pick the message with `id`.
/// Empty payloads (priming events) and other messages give `None`.
pub(super) fn find_message(data: &str, id: u64) -> Result<Option<Value>, Failure> {
    if data.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(data).map_err(|e| Failure {
        key: format!("reply is not JSON: {e}"),
        detail: Some(truncate(data, 1000)),
        rate_limited: false,
    })?;
    let is_reply = |m: &Value| {
        m.get("id").and_then(Value::as_u64) == Some(id)
            && (m.get("result").is_some() || m.get("error").is_some())
    };
    Ok(match value {
        Value::Array(batch) => batch.into_iter().find(is_reply),
        message if is_reply(&message) => Some(message),
        _ => None,
    })
}

/// The `result` of a JSON-RPC reply, or its error as a failure.
pub(super) fn jsonrpc_result(message: &Value) -> Result<&Value, Failure> {
    if let Some(error) = message.get("error") {
        let code = error.get("code").map(|c| c.to_string()).unwrap_or_default();
        let msg = error.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(Failure {
            key: format!("JSON-RPC error {code}: {msg}"),
            detail: error
                .get("data")
                .is_some()
                .then(|| truncate(&error.to_string(), 1000)),
            rate_limited: false,
        });
    }
    message
        .get("result")
        .ok_or_else(|| Failure::new("reply has neither result nor error"))
}

/// A successful tool result: `result` present and `result.isError` not true.
pub(super) fn check_tool_result(message: &Value) -> Result<(), Failure> {
    let result = jsonrpc_result(message)?;
    if !result.is_object() {
        return Err(Failure::new("tools/call result is not an object"));
    }
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = result
            .get("content")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find_map(|item| item.get("text").and_then(Value::as_str))
            })
            .unwrap_or("(no text)");
        return Err(Failure::new(format!("tool error: {}", truncate(text, 200))));
    }
    Ok(())
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An error with its sources (reqwest's top-level message alone hides the cause).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        source = cause.source();
    }
    s
}
