//! The backend call's span, and the trace context passed on to the backend: in the
//! request's `_meta` (`traceparent`, `tracestate`, as MCP 2026-07-28 defines them)
//! for every backend, and as W3C headers for HTTP upstreams ([`TracedClient`]).

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, GetMeta, RequestMetaObject};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use tracing::Span;
use tracing::field::Empty;

use crate::telemetry::otel::{CallSpan, TARGET, TraceHeaders};

/// The span of one call to `backend` (`kind`: stdio, http, docs), under the MCP
/// method's span of the request being served.
pub fn backend_span(
    context: &RequestContext<RoleServer>,
    method: &str,
    backend: &str,
    kind: &'static str,
) -> Span {
    let parent = context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<CallSpan>());
    // No MCP span (traces off, or this trace shed): no orphan trace of its own.
    let Some(CallSpan(parent)) = parent.filter(|CallSpan(p)| !p.is_disabled()) else {
        return Span::none();
    };
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "backend",
        otel.name = %format_args!("{method} {backend}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        mcp.method.name = method,
        mcp_edge.backend = backend,
        mcp_edge.backend.kind = kind,
        rpc.jsonrpc.error_code = Empty,
    )
}

/// Record a failed backend call on its span (the code, never the message: it may
/// quote arguments).
pub fn failed(span: &Span, error: &rmcp::ErrorData) {
    if !span.is_disabled() {
        span.record("otel.status_code", "ERROR");
        span.record("rpc.jsonrpc.error_code", error.code.0);
        span.record("error.type", error.code.0.to_string());
    }
}

/// Put `span`'s trace context into the upstream request's `_meta` (replacing the
/// client's, which is the parent of the edge's spans). With traces off, the
/// client's own context passes through as it came.
pub fn propagate(span: &Span, meta: &mut RequestMetaObject) {
    if let Some(TraceHeaders {
        traceparent,
        tracestate,
    }) = TraceHeaders::of(span)
    {
        if let Some(tp) = traceparent {
            meta.0.set_traceparent(tp);
        }
        match tracestate {
            Some(ts) => meta.0.set_tracestate(ts),
            None => {
                meta.0.0.remove("tracestate");
            }
        }
    }
}

/// reqwest for HTTP upstreams, adding the W3C headers of each request's `_meta`.
#[derive(Clone)]
pub struct TracedClient(pub reqwest::Client);

fn with_trace_headers(
    message: &ClientJsonRpcMessage,
    mut headers: HashMap<HeaderName, HeaderValue>,
) -> HashMap<HeaderName, HeaderValue> {
    if let ClientJsonRpcMessage::Request(r) = message {
        let meta = r.request.get_meta();
        for (name, value) in [
            ("traceparent", meta.0.get_traceparent()),
            ("tracestate", meta.0.get_tracestate()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
    headers
}

type Error = StreamableHttpError<reqwest::Error>;

impl StreamableHttpClient for TracedClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let headers = with_trace_headers(&message, custom_headers);
        self.0
            .post_message(uri, message, session_id, auth_header, headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let headers = with_trace_headers(&message, custom_headers);
        self.0
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let headers = with_trace_headers(&message, custom_headers);
        self.0
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                limits,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        self.0
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.0
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.0
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
