//! The spans of one request: a server span per HTTP request ([`root`]), and in the
//! `/mcp` chain children for authentication, the rate limit and the MCP method
//! ([`Spans`]); the backend call's span is opened by the proxy under the MCP one
//! ([`CallSpan`]). No key, token or argument value is ever an attribute.
//!
//! The parent of the root is the request's `traceparent` header or, failing that,
//! the MCP message's `params._meta.traceparent` — known only once the body has been
//! read, after authentication. So spans opened before the body is read are kept
//! unparented and adopted once it is known ([`Spans::settle`]); nothing starts the
//! root before then.

use axum::extract::Request;
use tracing::Span;
use tracing::field::Empty;

use super::error::EdgeError;
use super::inspect::McpCall;
use crate::auth::Principal;
pub use crate::telemetry::otel::CallSpan;
use crate::telemetry::otel::{self, TARGET, TraceHeaders};

/// The request's server span, in its extensions.
#[derive(Clone)]
pub struct RequestSpan {
    pub span: Span,
    /// The root already has its parent (from the `traceparent` header).
    pub parented: bool,
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Marks a request that came in on the peer listener: its trace may be under way on
/// the replica that forwarded it, so it is not shed before its root is built; once
/// the request is verified ([`forwarded_by_peer`]) the root follows that replica's
/// decision.
#[derive(Debug, Clone, Copy)]
pub struct OnPeerListener;

/// The server span of `request` (disabled when traces are off).
pub fn root(request: &Request, request_id: &str) -> RequestSpan {
    let from_peer = request.extensions().get::<OnPeerListener>().is_some();
    if !from_peer && otel::shed_new_trace() {
        return RequestSpan {
            span: Span::none(),
            parented: true,
        };
    }
    let route = crate::metrics::route_label(request.uri().path());
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = request.method().as_str(),
        http.route = route,
        url.path = request.uri().path(),
        network.protocol.version = protocol_version(request.version()),
        client.address = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        mcp_edge.request_id = request_id,
        mcp_edge.principal = Empty,
        mcp_edge.hop = Empty,
    );
    if span.is_disabled() {
        return RequestSpan {
            span,
            parented: true,
        };
    }
    span.record(
        "client.address",
        super::request::client_ip(request).to_string(),
    );
    let from_header = TraceHeaders {
        traceparent: header(request, "traceparent"),
        tracestate: header(request, "tracestate"),
    };
    let parented = otel::set_remote_parent(&span, &from_header);
    RequestSpan { span, parented }
}

/// The peer listener verified this request (its HMAC): its root continues the trace
/// of the replica that forwarded it. Recorded before the root starts, so the
/// sampler sees it and follows that replica's decision instead of shedding part of a
/// trace under way. An unverified request's root is a new trace like any other.
pub fn forwarded_by_peer(extensions: &http::Extensions) {
    if let Some(root) = extensions.get::<RequestSpan>()
        && !root.span.is_disabled()
    {
        root.span.record(otel::HOP, otel::FROM_PEER);
    }
}

/// `network.protocol.version` as the semantic conventions write it ("1.1", "2").
fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The peer hop: the owner's spans continue this request's trace, under its MCP
/// span, instead of starting one of their own (or hanging from the client's span
/// beside this replica's). With traces off, the client's headers pass as they came.
pub fn carry_to_owner(parts: &mut http::request::Parts) {
    let Some(TraceHeaders {
        traceparent,
        tracestate,
    }) = parts
        .extensions
        .get::<CallSpan>()
        .and_then(|CallSpan(span)| TraceHeaders::of(span))
    else {
        return;
    };
    for (name, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
        match value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
            Some(v) => parts.headers.insert(name, v),
            None => parts.headers.remove(name),
        };
    }
}

/// After the response: its status, and why it was refused.
pub fn answered(root: &Span, status: u16, refusal: Option<&str>, principal: Option<&str>) {
    if root.is_disabled() {
        return;
    }
    root.record("http.response.status_code", i64::from(status));
    if let Some(p) = principal {
        root.record("mcp_edge.principal", p);
    }
    if let Some(reason) = refusal {
        root.record("error.type", reason);
    }
    if status >= 500 {
        root.record("otel.status_code", "ERROR");
    }
}

/// Mark `span` as failed with `error`'s reason (status 401/403/429… and why).
pub fn refused(span: &Span, error: EdgeError) -> EdgeError {
    if !span.is_disabled() {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", error.reason());
        span.record("error.type", error.reason());
    }
    error
}

/// The chain's spans for one request.
pub struct Spans {
    root: Span,
    settled: bool,
    /// Opened before the root's parent was known: adopted by [`Spans::settle`].
    pending: Vec<Span>,
    /// The trace will not be exported: no more spans are opened.
    unsampled: bool,
}

macro_rules! step_span {
    ($spans:expr, $name:literal) => {{
        let span = if $spans.unsampled {
            Span::none()
        } else if $spans.settled {
            tracing::info_span!(target: TARGET, parent: &$spans.root, $name,
                otel.status_code = Empty, otel.status_description = Empty, error.type = Empty)
        } else {
            tracing::info_span!(target: TARGET, parent: None, $name,
                otel.status_code = Empty, otel.status_description = Empty, error.type = Empty)
        };
        if !$spans.settled && !span.is_disabled() {
            $spans.pending.push(span.clone());
        }
        span
    }};
}

impl Spans {
    pub fn of(extensions: &http::Extensions) -> Spans {
        match extensions.get::<RequestSpan>() {
            Some(r) if !r.span.is_disabled() => {
                let mut spans = Spans {
                    root: r.span.clone(),
                    settled: r.parented,
                    pending: Vec::new(),
                    unsampled: false,
                };
                if spans.settled {
                    spans.check_sampled();
                }
                spans
            }
            // Traces off, or this one shed: no child either (with no root to
            // hang from, each would start a trace of its own).
            _ => Spans {
                root: Span::none(),
                settled: true,
                pending: Vec::new(),
                unsampled: true,
            },
        }
    }

    /// Authentication (the lockout and the credential).
    pub fn auth(&mut self) -> Span {
        step_span!(self, "auth")
    }

    pub fn rate_limit(&mut self) -> Span {
        step_span!(self, "rate_limit")
    }

    /// The body has been read: the root's parent is the header's or `_meta`'s.
    pub fn settle(&mut self, from_meta: &TraceHeaders) {
        if self.settled {
            return;
        }
        self.settled = true;
        otel::set_remote_parent(&self.root, from_meta);
        if self.root.is_disabled() {
            return;
        }
        // The root starts here (its parent now known) and decides the trace.
        let cx = otel::context(&self.root);
        for span in self.pending.drain(..) {
            otel::adopt(&span, cx.clone());
        }
        self.unsampled = !otel::is_sampled(&cx);
    }

    /// A trace that will not be exported (not sampled, or shed while the exporter
    /// queue is full) gets no further spans: they would cost their creation and
    /// be thrown away.
    fn check_sampled(&mut self) {
        if !self.root.is_disabled() && !otel::is_sampled(&otel::context(&self.root)) {
            self.unsampled = true;
        }
    }

    /// The MCP method's span (OpenTelemetry's MCP conventions), under the root.
    pub fn call(&mut self, call: &McpCall, principal: &Principal, session: Option<&str>) -> Span {
        self.settle(&TraceHeaders::default());
        if self.unsampled {
            return Span::none();
        }
        let method = call.method.as_deref().unwrap_or("-");
        let target = call.audited.as_ref().and_then(|a| a.name.as_deref());
        let span = tracing::info_span!(
            target: TARGET,
            parent: &self.root,
            "mcp",
            otel.name = %format_args!("{method}{}{}", if target.is_some() { " " } else { "" }, target.unwrap_or("")),
            otel.status_code = Empty,
            otel.status_description = Empty,
            error.type = Empty,
            mcp.method.name = method,
            gen_ai.tool.name = Empty,
            gen_ai.prompt.name = Empty,
            mcp.resource.uri = Empty,
            mcp.session.id = Empty,
            rpc.jsonrpc.error_code = Empty,
            mcp_edge.principal = &*principal.name,
            mcp_edge.session.kind = if session.is_some() { "session" } else { "stateless" },
        );
        if span.is_disabled() {
            return span;
        }
        if let Some(id) = session {
            span.record("mcp.session.id", id);
        }
        match (method, target) {
            ("tools/call", Some(t)) => {
                span.record("gen_ai.tool.name", t);
            }
            ("prompts/get", Some(t)) => {
                span.record("gen_ai.prompt.name", t);
            }
            ("resources/read", Some(t)) => {
                span.record("mcp.resource.uri", t);
            }
            _ => {}
        }
        span
    }
}

impl Drop for Spans {
    fn drop(&mut self) {
        // Refused before the body was read: the header's parent, or none.
        self.settle(&TraceHeaders::default());
    }
}
