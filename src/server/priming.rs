//! A POST answered as an SSE stream: its head and rmcp's priming event sent together
//! with the first real event.
//!
//! rmcp opens every POST answer in a session as an SSE stream whose first event is a
//! priming event (an event id and empty data, so the client can resume: SEP-1699);
//! the answer follows when the backend gives it. Sent as they come, the head and the
//! priming event take one socket write (and TLS record) and the answer another. Held
//! until the first event with data (or the stream's end) is ready, they leave in one.
//! A stream with nothing more within [`HOLD`] (a slow tool) gets its head and priming
//! event then, as before.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::header;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

/// How long the head and priming event wait for the answer.
pub const HOLD: Duration = Duration::from_millis(50);

/// `response` (to a POST), with the start of an SSE stream held as the module says.
pub async fn send_with_answer(response: Response, hold: Duration) -> Response {
    let sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse || !response.status().is_success() {
        return response;
    }
    let (parts, mut body) = response.into_parts();
    // One timer for the whole hold (not one per frame awaited).
    let mut deadline = std::pin::pin!(tokio::time::sleep(hold));
    let mut held = BytesMut::new();
    let mut then = None;
    loop {
        let next = tokio::select! {
            biased;
            frame = body.frame() => Ok(frame),
            () = &mut deadline => Err(()),
        };
        match next {
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    held.extend_from_slice(&data);
                    if carries_data(&data) {
                        break;
                    }
                }
                Err(frame) => {
                    then = Some(Ok(frame));
                    break;
                }
            },
            Ok(Some(Err(e))) => {
                then = Some(Err(e));
                break;
            }
            // The end, or nothing more yet: send what there is.
            Ok(None) | Err(_) => break,
        }
    }
    let first = (!held.is_empty()).then(|| held.freeze());
    Response::from_parts(
        parts,
        Body::new(Held {
            first,
            then,
            rest: body,
        }),
    )
}

/// Does this piece of an SSE stream hold an event with data (not just a priming
/// event's id and retry, or a comment)?
fn carries_data(chunk: &[u8]) -> bool {
    chunk.split(|b| *b == b'\n').any(|line| {
        line.strip_prefix(b"data:")
            .is_some_and(|payload| !payload.trim_ascii().is_empty())
    })
}

struct Held {
    first: Option<Bytes>,
    then: Option<Result<Frame<Bytes>, axum::Error>>,
    rest: Body,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if let Some(then) = this.then.take() {
            return Poll::Ready(Some(then));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.then.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let held = self.first.as_ref().map_or(0, |b| b.len() as u64);
        // Upper bound first: `set_lower` panics above the upper bound in place.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + held);
        }
        hint.set_lower(rest.lower() + held);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(body: Body) -> Response {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(body)
            .unwrap()
    }

    /// An SSE body whose pieces come from the returned sender.
    fn streamed() -> (tokio::sync::mpsc::Sender<&'static str>, Body) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(4);
        let stream = futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|s| s.map(|s| Ok::<_, std::io::Error>(Bytes::from_static(s.as_bytes()))))
        });
        (tx, Body::from_stream(stream))
    }

    #[tokio::test]
    async fn the_priming_event_leaves_with_the_answer() {
        let (tx, body) = streamed();
        tx.send("id: 0\nretry: 3000\ndata: \n\n").await.unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send("id: 1\ndata: {\"id\":1}\n\n").await.unwrap();
            tx.send(": later\n\n").await.unwrap();
        });
        let mut body = send_with_answer(sse(body), Duration::from_secs(5))
            .await
            .into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            &first[..],
            b"id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {\"id\":1}\n\n"
        );
        let next = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&next[..], b": later\n\n");
        sender.await.unwrap();
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_slow_answer_gets_the_priming_event_after_the_hold() {
        let (tx, body) = streamed();
        tx.send("id: 0\nretry: 3000\ndata: \n\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut body = send_with_answer(sse(body), Duration::from_millis(30))
            .await
            .into_body();
        assert!(started.elapsed() >= Duration::from_millis(30));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"id: 0\nretry: 3000\ndata: \n\n");
        tx.send("id: 1\ndata: {}\n\n").await.unwrap();
        drop(tx);
        let next = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&next[..], b"id: 1\ndata: {}\n\n");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn json_answers_and_ended_streams_pass_as_they_are() {
        let json = Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let json = send_with_answer(json, Duration::from_secs(5)).await;
        let bytes = json.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{}");
        let ended =
            send_with_answer(sse(Body::from("id: 0\ndata: \n\n")), Duration::from_secs(5)).await;
        let body = ended.into_body();
        // What hyper asks before writing the head: the held bytes and an ended rest.
        assert_eq!(body.size_hint().exact(), Some(14));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"id: 0\ndata: \n\n");
    }

    #[test]
    fn only_an_event_with_a_payload_carries_data() {
        assert!(!carries_data(b"id: 0\nretry: 3000\ndata: \n\n"));
        assert!(!carries_data(b": keep-alive\n\n"));
        assert!(carries_data(b"id: 3\ndata: {\"jsonrpc\":\"2.0\"}\n\n"));
    }
}
