//! Metrics derived from the access-log middleware: request counts, auth failures,
//! rate limiting, and `tools/call` latency measured until the response has ended.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde_json::Value;

use super::ToolOutcome;

/// What the middleware chain learned about one request, as far as metrics care.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome<'a> {
    /// `AuthFailure::reason`, or `locked_out`.
    pub auth: Option<&'static str>,
    pub rate_limited: bool,
    pub mcp_method: Option<&'a str>,
    pub tool: Option<&'a str>,
}

/// JSON bodies larger than this are not inspected for an error (counted as ok).
const MAX_INSPECTED: usize = 1 << 20;

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

/// For a `tools/call`, wrap the response body so the call's latency and outcome are
/// recorded when its answer has been sent (SSE responses end after the result).
pub fn track_tool_call(response: Response, fields: &Outcome<'_>, start: Instant) -> Response {
    if fields.mcp_method != Some("tools/call") {
        return response;
    }
    let tool = fields.tool.unwrap_or("_unknown").to_owned();
    if !response.status().is_success() {
        super::tool_call(&tool, ToolOutcome::Refused, start.elapsed());
        return response;
    }
    let sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    response.map(|inner| {
        Body::new(ToolCallBody {
            inner,
            tool,
            start,
            sse,
            buf: Vec::new(),
            overflow: false,
            done: false,
        })
    })
}

/// The outcome a JSON-RPC message reports, if it is a response.
fn outcome_of(message: &Value) -> Option<ToolOutcome> {
    let message = match message {
        Value::Array(items) => items.iter().find(|m| m.get("id").is_some())?,
        other => other,
    };
    if message.get("error").is_some() {
        Some(ToolOutcome::RpcError)
    } else if let Some(result) = message.get("result") {
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            Some(ToolOutcome::ToolError)
        } else {
            Some(ToolOutcome::Ok)
        }
    } else {
        None
    }
}

struct ToolCallBody {
    inner: Body,
    tool: String,
    start: Instant,
    sse: bool,
    buf: Vec<u8>,
    overflow: bool,
    done: bool,
}

impl ToolCallBody {
    fn finish(&mut self, outcome: ToolOutcome) {
        if !self.done {
            self.done = true;
            self.buf = Vec::new();
            super::tool_call(&self.tool, outcome, self.start.elapsed());
        }
    }

    /// Feed SSE bytes; complete `data:` lines are parsed as they arrive.
    fn feed_sse(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                if !self.overflow {
                    let line = std::mem::take(&mut self.buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if let Some(payload) = line.strip_prefix(b"data:")
                        && let Ok(v) = serde_json::from_slice::<Value>(payload)
                        && let Some(outcome) = outcome_of(&v)
                    {
                        self.finish(outcome);
                        return;
                    }
                }
                self.buf.clear();
                self.overflow = false;
            } else if !self.overflow {
                self.buf.push(b);
                if self.buf.len() > MAX_INSPECTED {
                    // A huge result line: assume success rather than buffer it all.
                    self.finish(ToolOutcome::Ok);
                    return;
                }
            }
        }
    }

    fn feed_json(&mut self, data: &[u8]) {
        if self.buf.len() + data.len() > MAX_INSPECTED {
            self.overflow = true;
            self.buf = Vec::new();
        } else if !self.overflow {
            self.buf.extend_from_slice(data);
        }
    }

    fn end(&mut self) {
        let outcome = if self.sse {
            ToolOutcome::Aborted
        } else if self.overflow {
            ToolOutcome::Ok
        } else {
            serde_json::from_slice::<Value>(&self.buf)
                .ok()
                .and_then(|v| outcome_of(&v))
                .unwrap_or(ToolOutcome::Aborted)
        };
        self.finish(outcome);
    }
}

impl HttpBody for ToolCallBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if !self.done => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    if self.sse {
                        self.feed_sse(&data);
                    } else {
                        self.feed_json(&data);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(ToolOutcome::Aborted),
            Poll::Ready(None) => self.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ToolCallBody {
    fn drop(&mut self) {
        if !self.done {
            self.finish(ToolOutcome::Aborted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_from_responses() {
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}})),
            Some(ToolOutcome::Ok)
        );
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}})),
            Some(ToolOutcome::ToolError)
        );
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}})),
            Some(ToolOutcome::RpcError)
        );
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","method":"notifications/progress"})),
            None
        );
    }
}
