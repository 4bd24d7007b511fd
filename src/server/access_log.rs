//! One access-log line per request, request ids, the request's server span, the
//! request metrics and the audit record of a call; what the steps of the chain learn
//! about a request is noted in its [`RequestLog`].

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::inspect::Audited;
use super::outcome::{Finished, ToolOutcome};
use super::state::AppState;
use crate::sync::lock;
use crate::telemetry::audit::{Audit, Record};

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
    /// The credential id (never the secret) and JWT `jti` of the principal.
    pub credential: Option<Arc<str>>,
    pub token_id: Option<Arc<str>>,
    /// An audited call's method and what it names, noted as soon as the body is
    /// read (so a call refused by the rate limit or a scope is audited too).
    pub call: Option<(String, Audited)>,
    /// Why the chain refused the request ([`super::EdgeError::reason`]).
    pub refusal: Option<&'static str>,
    /// The MCP method's span, which the call's outcome is recorded on.
    pub call_span: Option<tracing::Span>,
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
            log.with(f);
        }
    }

    pub fn with(&self, f: impl FnOnce(&mut LogFields)) {
        f(&mut lock(&self.0));
    }
}

const REQUEST_ID: &str = "x-request-id";

/// What is known of a request before it is served.
struct Seen {
    start: Instant,
    arrived: SystemTime,
    request_id: String,
    method: http::Method,
    path: String,
    /// The real client (PROXY header / trusted X-Forwarded-For), else the TCP peer.
    remote: String,
    client: String,
    version: http::Version,
    /// A call refused before its body is read is known by its 2026 headers.
    declared: Option<(String, Audited)>,
}

/// Assign a request id (or keep a sane incoming one), echo it, and log one line per
/// request. Headers are never logged, so `Authorization` cannot leak here.
pub async fn log_requests(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let arrived = SystemTime::now();
    let request_id = request_id(&request);
    // On the request too, so a hop to the session's owner carries the same id.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, v);
    }
    let log = RequestLog::default();
    request.extensions_mut().insert(log.clone());
    let root = super::trace::root(&request, &request_id);
    request.extensions_mut().insert(root.clone());
    let seen = Seen {
        start,
        arrived,
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        remote: super::request::client_addr(&request)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        client: super::request::client_ip(&request).to_string(),
        version: request.version(),
        declared: declared_call(&request),
        request_id,
    };
    // The edge's spans name their parents explicitly, so none is entered: entering
    // and leaving a span on every poll is most of what a span costs.
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&seen.request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let mut fields = lock(&log.0);
    let status = response.status().as_u16();
    write_line(&seen, status, &fields);
    let reason = fields.auth.or(fields.refusal);
    // Refused requests only (and only with the status page on): a served one pays nothing.
    if let (Some(reason), Some(refusals)) = (reason, &state.refusals) {
        // What the call named (a tool, a prompt, a resource), noted as its body was read.
        let named = fields.tool.as_deref().or_else(|| {
            fields
                .call
                .as_ref()
                .and_then(|(_, call)| call.name.as_deref())
        });
        refusals.record(reason, fields.principal.as_ref(), status, named);
    }
    super::trace::answered(&root.span, status, reason, fields.principal.as_deref());
    // A request forwarded by a peer was counted (and audited) by the replica that
    // took it from the client (and that streams the answer back), so a cluster-wide
    // sum counts it once.
    if fields.hop.as_deref() == Some("from peer") {
        return response;
    }
    let outcome = crate::metrics::Outcome {
        auth: fields.auth,
        rate_limited: fields.rate_limited,
        mcp_method: fields.mcp_method.as_deref(),
        tool: fields.tool.as_deref(),
    };
    crate::metrics::record_request(&seen.path, status, &outcome);
    match call_record(&state, seen, status, &root.span, &mut fields) {
        Some(watch) => {
            drop(fields);
            watch.around(&state, response)
        }
        None => response,
    }
}

fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

fn write_line(seen: &Seen, status: u16, fields: &LogFields) {
    let latency_ms = seen.start.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "mcp_edge::access",
        request_id = %seen.request_id,
        remote = %seen.remote,
        http = ?seen.version,
        method = %seen.method,
        path = %seen.path,
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
}

/// A call to meter (its `tools/call` latency) and audit once its answer is sent.
struct CallWatch {
    record: Record,
    /// Let through the rate limit: counted in the tool metric.
    metered: bool,
    call_span: Option<tracing::Span>,
    start: Instant,
}

/// The call this request made, if it is metered or audited: its record so far.
fn call_record(
    state: &AppState,
    seen: Seen,
    status: u16,
    root: &tracing::Span,
    fields: &mut LogFields,
) -> Option<CallWatch> {
    // The tool metric counts calls let through the rate limit; the audit trail
    // every call it can name.
    let metered = fields.mcp_method.as_deref() == Some("tools/call");
    let (method, call) = fields.call.take().or(seen.declared)?;
    if !metered && !state.audit.enabled() {
        return None;
    }
    let backend = call
        .name
        .as_deref()
        .and_then(|n| state.routing.backend_of(n, method == "resources/read"))
        .unwrap_or("_unknown")
        .to_owned();
    let session_kind = match (seen.path.as_str(), fields.session.is_some()) {
        ("/messages" | "/sse", _) => "legacy_sse",
        (_, true) => "session",
        (_, false) => "stateless",
    };
    let record = Record {
        time: humantime::format_rfc3339_millis(seen.arrived).to_string(),
        method,
        name: call.name,
        backend: Some(backend),
        principal: fields.principal.as_deref().map(str::to_owned),
        credential: fields.credential.as_deref().map(str::to_owned),
        token_id: fields.token_id.as_deref().map(str::to_owned),
        session: fields.session.clone(),
        session_kind,
        client: Some(seen.client),
        reason: fields.auth.or(fields.refusal).map(str::to_owned),
        status,
        request_bytes: call.request_bytes,
        arguments_sha256: call.arguments_sha256,
        arguments: call
            .arguments
            .and_then(|a| serde_json::value::RawValue::from_string(a).ok()),
        request_id: Some(seen.request_id),
        trace_id: crate::telemetry::otel::trace_id(root),
        ..Record::default()
    };
    Some(CallWatch {
        record,
        metered,
        call_span: fields.call_span.take(),
        start: seen.start,
    })
}

impl CallWatch {
    /// Finish the record from the answer as it is sent.
    fn around(self, state: &AppState, response: Response) -> Response {
        let audit = state.audit.clone();
        let start = self.start;
        let done = move |finished: Finished| self.finish(&audit, finished);
        super::outcome::watch(response, start, Box::new(done))
    }

    fn finish(mut self, audit: &Audit, finished: Finished) {
        let Finished {
            mut outcome,
            error_code,
            response_bytes,
            elapsed,
        } = finished;
        let record = &mut self.record;
        if self.metered {
            let tool = record.name.as_deref().unwrap_or("_unknown");
            let backend = record.backend.as_deref().unwrap_or("_unknown");
            crate::metrics::tool_call(tool, backend, outcome, elapsed);
        }
        if let (Some(span), Some(code)) = (&self.call_span, error_code) {
            span.record("rpc.jsonrpc.error_code", code);
            span.record("error.type", code.to_string());
            span.record("otel.status_code", "ERROR");
        }
        if !audit.enabled() {
            return;
        }
        // The edge's own refusal inside the backend: a tool the principal may not call.
        if error_code == Some(crate::mcp::codes::FORBIDDEN) {
            outcome = ToolOutcome::Refused;
            record.reason.get_or_insert_with(|| "tool_denied".into());
        }
        record.outcome = outcome.label();
        record.error_code = error_code;
        record.response_bytes = response_bytes;
        record.duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        audit.write(record);
    }
}

/// `Mcp-Method` / `Mcp-Name` (2026-07-28) of an audited call, before its body is read.
fn declared_call(request: &Request) -> Option<(String, Audited)> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let method = header("mcp-method").filter(|m| super::inspect::is_audited(m))?;
    let request_bytes = header("content-length")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Some((
        method,
        Audited {
            name: header("mcp-name").filter(|n| n.len() <= 256),
            request_bytes,
            ..Audited::default()
        },
    ))
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
