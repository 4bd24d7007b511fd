//! How an answered call ended, read from its response as it is sent: the first
//! JSON-RPC response in the body (JSON, or an SSE stream) says ok, tool error or
//! JSON-RPC error. The call's metric and audit record are written from this.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

pub use crate::metrics::ToolOutcome;

/// What the response said, once it has been sent (or abandoned).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    pub outcome: ToolOutcome,
    /// The JSON-RPC error code, for an error answer.
    pub error_code: Option<i64>,
    pub response_bytes: u64,
    /// Until the answer was seen (not until a long SSE stream closed).
    pub elapsed: Duration,
}

type Done = Box<dyn FnOnce(Finished) + Send>;

/// JSON bodies larger than this are not inspected for an error (counted as ok).
const MAX_INSPECTED: usize = 1 << 20;

/// Call `done` when `response` has been sent. A refusal (non-2xx) is finished at once.
pub fn watch(response: Response, start: Instant, done: Done) -> Response {
    if !response.status().is_success() {
        let response_bytes = response.body().size_hint().exact().unwrap_or(0);
        done(Finished {
            outcome: ToolOutcome::Refused,
            error_code: None,
            response_bytes,
            elapsed: start.elapsed(),
        });
        return response;
    }
    let sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    response.map(|inner| {
        Body::new(Watched {
            inner,
            start,
            sse,
            buf: Vec::new(),
            overflow: false,
            seen: None,
            bytes: 0,
            done: Some(done),
        })
    })
}

/// The outcome the JSON-RPC message (or batch) in `json` reports, if it is a
/// response. Read by skimming: a tool's result is skipped, not built as a `Value`
/// (that cost as much as a tenth of a session call); anything that does not fit the
/// skim is read as a `Value` the slow way.
fn outcome_in(json: &[u8]) -> Option<(ToolOutcome, Option<i64>)> {
    let skimmed = if super::inspect::is_batch(json) {
        serde_json::from_slice::<Vec<Reply>>(json)
            .map(|replies| replies.into_iter().find(|r| r.id.0))
    } else {
        serde_json::from_slice::<Reply>(json).map(Some)
    };
    match skimmed {
        Ok(reply) => reply?.outcome(),
        Err(_) => outcome_of(&serde_json::from_slice::<Value>(json).ok()?),
    }
}

/// The parts of a JSON-RPC message that say how a call ended.
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    id: Present,
    #[serde(default, deserialize_with = "present")]
    error: Option<ReplyError>,
    #[serde(default, deserialize_with = "present")]
    result: Option<ReplyResult>,
}

#[derive(Deserialize, Default)]
struct ReplyError {
    code: Option<i64>,
}

#[derive(Deserialize, Default)]
struct ReplyResult {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
}

/// A member that is there, even as `null` (which `Option` would read as absent).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d).map(|v| Some(v.unwrap_or_default()))
}

impl Reply {
    fn outcome(self) -> Option<(ToolOutcome, Option<i64>)> {
        match (self.error, self.result) {
            (Some(error), _) => Some((ToolOutcome::RpcError, error.code)),
            (
                None,
                Some(ReplyResult {
                    is_error: Some(true),
                }),
            ) => Some((ToolOutcome::ToolError, None)),
            (None, Some(_)) => Some((ToolOutcome::Ok, None)),
            (None, None) => None,
        }
    }
}

/// [`outcome_in`] for what the skim does not fit.
fn outcome_of(message: &Value) -> Option<(ToolOutcome, Option<i64>)> {
    let message = match message {
        Value::Array(items) => items.iter().find(|m| m.get("id").is_some())?,
        other => other,
    };
    if let Some(error) = message.get("error") {
        Some((
            ToolOutcome::RpcError,
            error.get("code").and_then(Value::as_i64),
        ))
    } else if let Some(result) = message.get("result") {
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            Some((ToolOutcome::ToolError, None))
        } else {
            Some((ToolOutcome::Ok, None))
        }
    } else {
        None
    }
}

/// The outcome an SSE line (without its `\n`) carries, if it is a `data:` line with one.
fn sse_line_outcome(line: &[u8]) -> Option<(ToolOutcome, Option<i64>)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix(b"data:").and_then(outcome_in)
}

struct Watched {
    inner: Body,
    start: Instant,
    sse: bool,
    buf: Vec<u8>,
    overflow: bool,
    /// The answer, once seen, and when.
    seen: Option<(ToolOutcome, Option<i64>, Duration)>,
    bytes: u64,
    done: Option<Done>,
}

impl Watched {
    fn saw(&mut self, outcome: (ToolOutcome, Option<i64>)) {
        if self.seen.is_none() {
            self.seen = Some((outcome.0, outcome.1, self.start.elapsed()));
            self.buf = Vec::new();
        }
    }

    fn finish(&mut self, otherwise: ToolOutcome) {
        let Some(done) = self.done.take() else { return };
        let (outcome, error_code, elapsed) = self
            .seen
            .unwrap_or_else(|| (otherwise, None, self.start.elapsed()));
        done(Finished {
            outcome,
            error_code,
            response_bytes: self.bytes,
            elapsed,
        });
    }

    /// Feed SSE bytes; complete `data:` lines are parsed as they arrive. A line whole
    /// in one piece (the usual case) is read in place; only the unfinished end of a
    /// piece is kept until the next one.
    fn feed_sse(&mut self, mut data: &[u8]) {
        while let Some(i) = memchr::memchr(b'\n', data) {
            let piece = &data[..i];
            data = &data[i + 1..];
            if self.buf.len() + piece.len() > MAX_INSPECTED {
                // A huge result line: assume success rather than buffer it all.
                return self.saw((ToolOutcome::Ok, None));
            }
            let outcome = if self.buf.is_empty() {
                sse_line_outcome(piece)
            } else {
                self.buf.extend_from_slice(piece);
                let outcome = sse_line_outcome(&self.buf);
                self.buf.clear();
                outcome
            };
            if let Some(outcome) = outcome {
                return self.saw(outcome);
            }
        }
        if self.buf.len() + data.len() > MAX_INSPECTED {
            return self.saw((ToolOutcome::Ok, None));
        }
        self.buf.extend_from_slice(data);
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
        if self.seen.is_none() && !self.sse {
            let outcome = match self.overflow {
                true => Some((ToolOutcome::Ok, None)),
                false => outcome_in(&self.buf),
            };
            if let Some(outcome) = outcome {
                self.saw(outcome);
            }
        }
        self.finish(ToolOutcome::Aborted);
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    self.bytes += data.len() as u64;
                    if self.seen.is_none() {
                        match self.sse {
                            true => self.feed_sse(&data),
                            false => self.feed_json(&data),
                        }
                    }
                }
                // hyper stops polling a body that says it has ended (a complete
                // JSON answer), so its end is read here, not from a final `None`.
                if self.inner.is_end_stream() {
                    self.end();
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(ToolOutcome::Aborted),
            Poll::Ready(None) => self.end(),
            Poll::Pending => {}
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

impl Drop for Watched {
    fn drop(&mut self) {
        // A body that had nothing left to send was not cut short.
        match self.inner.is_end_stream() {
            true => self.end(),
            false => self.finish(ToolOutcome::Aborted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn skimming_reads_what_the_value_says() {
        for message in [
            json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}]}}),
            json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}),
            json!({"jsonrpc":"2.0","id":1,"result":{"isError":false}}),
            json!({"jsonrpc":"2.0","id":1,"result":null}),
            json!({"jsonrpc":"2.0","id":1,"result":5}),
            json!({"jsonrpc":"2.0","id":1,"result":{"isError":"yes"}}),
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}),
            json!({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}),
            json!({"jsonrpc":"2.0","id":1,"error":null}),
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{}}),
            json!([{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":null,"error":{"code":-1}}]),
            json!([{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"result":{"isError":true}}]),
            json!([{"jsonrpc":"2.0","method":"n"}]),
            json!([]),
            json!("text"),
        ] {
            let bytes = serde_json::to_vec(&message).unwrap();
            assert_eq!(outcome_in(&bytes), outcome_of(&message), "{message}");
        }
        assert_eq!(outcome_in(b"not json"), None);
        assert_eq!(
            outcome_in(b" {\"id\":1,\"result\":{}} "),
            Some((ToolOutcome::Ok, None))
        );
    }

    #[test]
    fn outcomes_from_responses() {
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}})),
            Some((ToolOutcome::Ok, None))
        );
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}})),
            Some((ToolOutcome::ToolError, None))
        );
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}})),
            Some((ToolOutcome::RpcError, Some(-32602)))
        );
        assert_eq!(
            outcome_of(&json!({"jsonrpc":"2.0","method":"notifications/progress"})),
            None
        );
    }

    /// However an SSE answer is cut into pieces, the same outcome is read from it.
    #[test]
    fn sse_outcome_read_whatever_the_pieces() {
        let stream = b"id: 0\nretry: 3000\ndata:\n\nevent: message\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32602,\"message\":\"x\"}}\r\n\n";
        let watch = || Watched {
            inner: Body::empty(),
            start: Instant::now(),
            sse: true,
            buf: Vec::new(),
            overflow: false,
            seen: None,
            bytes: 0,
            done: None,
        };
        let expected = Some((ToolOutcome::RpcError, Some(-32602)));
        for cut in 0..=stream.len() {
            for second in cut..=stream.len() {
                let mut w = watch();
                w.feed_sse(&stream[..cut]);
                w.feed_sse(&stream[cut..second]);
                w.feed_sse(&stream[second..]);
                assert_eq!(
                    w.seen.map(|s| (s.0, s.1)),
                    expected,
                    "cut at {cut} and {second}"
                );
            }
        }
        // Without the line's end the answer is not read yet; with it, it is.
        let mut w = watch();
        w.feed_sse(&stream[..stream.len() - 3]);
        assert_eq!(w.seen, None);
        w.feed_sse(b"\r\n");
        assert_eq!(w.seen.map(|s| (s.0, s.1)), expected);
        // A data line over the inspection bound counts as a success, unread.
        let mut w = watch();
        let mut huge = b"data: ".to_vec();
        huge.resize(MAX_INSPECTED + 10, b' ');
        w.feed_sse(&huge);
        assert_eq!(w.seen.map(|s| (s.0, s.1)), Some((ToolOutcome::Ok, None)));
    }
}
