//! Per-connection deadlines: idle (nothing in flight), HTTP/1 header read (from a
//! request's first byte) and request body read; and the service wrapper that tells
//! the stream when requests start and responses end.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{ClientAddr, Permit, Shared, Transport};
use crate::config::ConnectionsConfig;
use crate::config::connections::contains;
use crate::sync::lock;

/// What the stream and the service of one connection share.
pub struct ConnState {
    /// Requests whose response has not been fully sent (streams included).
    in_flight: AtomicUsize,
    timing: Mutex<Timing>,
}

struct Timing {
    /// When the last response ended (or the connection opened).
    idle_since: Instant,
    /// When the first byte of a not-yet-dispatched HTTP/1 request arrived.
    head_started: Option<Instant>,
}

impl ConnState {
    fn timing(&self) -> std::sync::MutexGuard<'_, Timing> {
        lock(&self.timing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    Http1,
    Http2,
}

/// The stream under hyper. Reads end (EOF, so hyper closes the connection) once the
/// connection has been idle for `idle_timeout`, or an HTTP/1 request's headers took
/// longer than `header_read_timeout` from their first byte.
pub struct ConnIo<T> {
    inner: T,
    state: Arc<ConnState>,
    timer: Pin<Box<Sleep>>,
    idle: Duration,
    header: Duration,
    proto: Proto,
    closed: bool,
    _permit: Permit,
}

impl ConnIo<Transport> {
    pub(super) fn new(inner: Transport, config: &ConnectionsConfig, permit: Permit) -> Self {
        let now = Instant::now();
        ConnIo {
            inner,
            state: Arc::new(ConnState {
                in_flight: AtomicUsize::new(0),
                timing: Mutex::new(Timing {
                    idle_since: now,
                    head_started: None,
                }),
            }),
            timer: Box::pin(tokio::time::sleep_until(now + config.idle_timeout)),
            idle: config.idle_timeout,
            header: config.header_read_timeout,
            proto: Proto::Unknown,
            closed: false,
            _permit: permit,
        }
    }
}

impl<T> ConnIo<T> {
    pub(super) fn state(&self) -> Arc<ConnState> {
        self.state.clone()
    }

    fn on_bytes(&mut self, got: &[u8]) {
        if self.proto == Proto::Unknown {
            let n = got.len().min(4);
            self.proto = match &got[..n] {
                b"PRI " => Proto::Http2,
                p if b"PRI ".starts_with(p) => Proto::Unknown,
                _ => Proto::Http1,
            };
        }
        // HTTP/2 sends pings and window updates between requests; only HTTP/1
        // bytes between requests are the start of the next request's headers.
        if self.proto == Proto::Http1 && self.state.in_flight.load(Ordering::Acquire) == 0 {
            self.state
                .timing()
                .head_started
                .get_or_insert_with(Instant::now);
        }
    }

    fn deadline(&self, now: Instant) -> Instant {
        if self.state.in_flight.load(Ordering::Acquire) > 0 {
            // Not idle: look again later (responses ending move `idle_since`).
            return now + self.idle;
        }
        let timing = self.state.timing();
        match timing.head_started {
            Some(start) if self.proto == Proto::Http1 => start + self.header,
            _ => timing.idle_since + self.idle,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    let mut head = [0u8; 4];
                    let n = (filled.len() - before).min(4);
                    head[..n].copy_from_slice(&filled[before..before + n]);
                    this.on_bytes(&head[..n]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                let now = Instant::now();
                let deadline = this.deadline(now);
                if now >= deadline {
                    this.closed = true;
                    return Poll::Ready(Ok(()));
                }
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks one request in flight until its response body is dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: &Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.timing().head_started = None;
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut timing = self.0.timing();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            timing.idle_since = Instant::now();
        }
    }
}

/// Wraps the app: tracks requests in flight, bounds request bodies in time, and
/// inserts the [`ClientAddr`].
#[derive(Clone)]
pub struct ConnService<S> {
    inner: S,
    state: Arc<ConnState>,
    client: SocketAddr,
    forwarders: Arc<Vec<IpNet>>,
    body_timeout: Duration,
}

impl<S> ConnService<S> {
    pub(super) fn new(
        inner: S,
        state: Arc<ConnState>,
        client: SocketAddr,
        shared: &Shared,
    ) -> ConnService<S> {
        let forwarders = &shared.config.trusted_forwarders;
        ConnService {
            inner,
            state,
            client,
            // Only a connection from a trusted forwarder needs the list.
            forwarders: Arc::new(if contains(forwarders, client.ip()) {
                forwarders.clone()
            } else {
                Vec::new()
            }),
            body_timeout: shared.config.body_read_timeout,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<Incoming>> for ConnService<S>
where
    S: tower::Service<Request<DeadlineBody>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<GuardBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(&self.state);
        let client = if self.forwarders.is_empty() {
            self.client
        } else {
            super::forwarded_client(request.headers(), self.client, &self.forwarders)
        };
        let deadline = Instant::now() + self.body_timeout;
        let mut request = request.map(|body| DeadlineBody {
            inner: body,
            deadline,
            limit: self.body_timeout,
            timer: None,
        });
        request.extensions_mut().insert(ClientAddr(client));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| GuardBody {
                inner: body,
                _guard: guard,
            }))
        })
    }
}

/// The request body did not arrive within `server.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?} (server.body_read_timeout)")]
pub struct BodyTimeout(pub Duration);

/// Whether a body-reading error (any wrapping) is a [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimeout>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    /// Made only when the body is actually waited for (most arrive at once).
    timer: Option<Pin<Box<Sleep>>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted in flight until it is dropped.
pub struct GuardBody<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for GuardBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
