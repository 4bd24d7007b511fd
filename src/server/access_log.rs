//! One access-log line per request, request ids, and the request metrics; what the
//! steps of the chain learn about a request is noted in its [`RequestLog`].

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::task::task_tracker::TaskTrackerToken;

/// What inner layers learn about a request, logged once it is answered.
#[derive(Debug, Default)]
pub struct LogFields {
    pub principal: Option<Arc<str>>,
    pub auth: Option<&'static str>,
    pub rate_limited: bool,
    pub mcp_method: Option<String>,
    pub tool: Option<String>,
    pub session: Option<String>,
    /// Between replicas: `to <owner>` on the replica that forwarded the request,
    /// `from peer` on the owner that served it.
    pub hop: Option<String>,
}

#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<LogFields>>);

impl RequestLog {
    /// Record something about the request, if it is being logged.
    pub fn note(request: &Request, f: impl FnOnce(&mut LogFields)) {
        RequestLog::note_in(request.extensions(), f)
    }

    /// [`RequestLog::note`] from a request's extensions (its parts, in async steps:
    /// a `&Request` is not `Send` across an await).
    pub fn note_in(extensions: &http::Extensions, f: impl FnOnce(&mut LogFields)) {
        if let Some(log) = extensions.get::<RequestLog>() {
            f(&mut log.0.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

const REQUEST_ID: &str = "x-request-id";

/// Assign a request id (or keep a sane incoming one), echo it, and log one line per
/// request. Headers are never logged, so `Authorization` cannot leak here.
pub async fn log_requests(mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let incoming = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let request_id = incoming.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // On the request too, so a hop to the session's owner carries the same id.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, v);
    }
    let log = RequestLog::default();
    request.extensions_mut().insert(log.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The real client (PROXY header / trusted X-Forwarded-For), else the TCP peer.
    let remote = super::request::client_addr(&request)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", request.version());
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let fields = log.0.lock().unwrap_or_else(|p| p.into_inner());
    let status = response.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "mcp_edge::access",
        request_id = %request_id,
        remote = %remote,
        http = %version,
        method = %method,
        path = %path,
        status,
        latency_ms = format_args!("{latency_ms:.2}"),
        principal = fields.principal.as_deref().unwrap_or("-"),
        auth_failure = fields.auth.unwrap_or("-"),
        rate_limited = fields.rate_limited,
        mcp_method = fields.mcp_method.as_deref().unwrap_or("-"),
        tool = fields.tool.as_deref().unwrap_or("-"),
        session = fields.session.as_deref().unwrap_or("-"),
        hop = fields.hop.as_deref().unwrap_or("-"),
        "request"
    );
    // A request forwarded by a peer was counted by the replica that took it from the
    // client (and that streams the answer back), so a cluster-wide sum counts it once.
    if fields.hop.as_deref() == Some("from peer") {
        return response;
    }
    let outcome = crate::metrics::Outcome {
        auth: fields.auth,
        rate_limited: fields.rate_limited,
        mcp_method: fields.mcp_method.as_deref(),
        tool: fields.tool.as_deref(),
    };
    crate::metrics::record_request(&path, status, &outcome);
    let response = crate::metrics::track_tool_call(response, &outcome, start);
    drop(fields);
    response
}

/// A response body that holds a shutdown-drain token until it has been sent.
pub struct TrackedBody {
    inner: Body,
    _token: TaskTrackerToken,
}

impl TrackedBody {
    pub fn new(inner: Body, token: TaskTrackerToken) -> TrackedBody {
        TrackedBody {
            inner,
            _token: token,
        }
    }
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
