//! Traces over OTLP: the exporter (gRPC or HTTP/protobuf), a bounded batch whose
//! drops are counted, W3C trace-context helpers, and the span names the edge uses.
//!
//! Spans are `tracing` spans with the target [`TARGET`]; only the OpenTelemetry
//! layer sees them (the log output filters them out), and with no endpoint
//! configured no layer enables them, so a disabled span costs one cached check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtelConfig, OtlpProtocol};
use crate::sync::lock;

/// The `tracing` target of every span exported as a trace.
pub const TARGET: &str = "mcp_edge::otel";

/// Spans waiting for export (or being exported) beyond this are dropped and counted
/// in `mcp_edge_trace_spans_dropped_total`: a slow collector never holds memory
/// or requests.
const MAX_QUEUED: usize = 8192;
/// Spans per export request, and how often pending spans are sent.
const BATCH: usize = 512;
const EXPORT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
#[error("otel.endpoint: cannot build the OTLP exporter: {0}")]
pub struct OtelError(String);

/// The exporter pipeline; [`Exporting::shutdown`] flushes what is queued.
pub struct Exporting {
    provider: SdkTracerProvider,
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporting {
    /// Export what is pending and stop (bounded: a collector that is down does not
    /// hold the exit).
    pub async fn shutdown(self) {
        self.stop.notify_one();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("traces not flushed at shutdown");
        }
        let _ = self
            .provider
            .shutdown_with_timeout(Duration::from_millis(100));
    }
}

/// Build the exporter and tracer for `config` (inside the Tokio runtime: the
/// batch processor runs on it).
pub fn pipeline(
    config: &OtelConfig,
) -> Result<(Exporting, opentelemetry_sdk::trace::Tracer), OtelError> {
    let headers = match &config.headers_file {
        Some(path) => crate::config::observe::read_headers(path).map_err(OtelError)?,
        None => Vec::new(),
    };
    let timeout = Duration::from_secs(10);
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => {
            let mut map = http::HeaderMap::new();
            for (name, value) in &headers {
                // Checked by `read_headers`; a name gRPC cannot carry is refused here.
                let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                ) else {
                    return Err(OtelError(format!(
                        "otel.headers_file: {name:?} is not a valid gRPC metadata entry"
                    )));
                };
                map.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map);
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(timeout)
                .with_metadata(metadata)
                .build()
        }
        OtlpProtocol::HttpProtobuf => {
            crate::tls::install_crypto_provider();
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| OtelError(e.to_string()))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(config.endpoint.clone())
                .with_timeout(timeout)
                .with_headers(headers.into_iter().collect::<HashMap<_, _>>())
                .build()
        }
    }
    .map_err(|e| OtelError(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
    for (k, v) in &config.resource_attributes {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(k.clone(), v.clone()));
    }
    let resource = resource.build();
    let mut exporter = exporter;
    exporter.set_resource(&resource);
    let pending = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(export_loop(exporter, pending.clone(), stop.clone()));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Batcher { pending })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("mcp-edge");
    Ok((
        Exporting {
            provider,
            stop,
            task,
        },
        tracer,
    ))
}

type Pending = Arc<Mutex<Vec<SpanData>>>;

/// Finished spans wait here for the export loop. Why not the SDK's batch processor:
/// it hands every span to its task through a channel (a task wake-up per span);
/// a push under a short lock is cheaper on the request path.
#[derive(Debug)]
struct Batcher {
    pending: Pending,
}

impl SpanProcessor for Batcher {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_QUEUED {
            drop(pending);
            return crate::metrics::trace_spans_dropped(1);
        }
        pending.push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Every [`EXPORT_EVERY`], send what is pending in batches of [`BATCH`]; a batch
/// that fails is counted and dropped (no retry queue to grow). On stop, one last
/// round, then the exporter's shutdown.
async fn export_loop<E: SpanExporter>(
    exporter: E,
    pending: Pending,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut tick = tokio::time::interval(EXPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            () = stop.notified() => true,
        };
        let mut spans = std::mem::take(&mut *lock(&pending));
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(BATCH));
            let n = spans.len();
            if let Err(e) = exporter.export(spans).await {
                crate::metrics::trace_export_failed();
                tracing::debug!(error = %e, spans = n, "trace export failed");
            }
            spans = rest;
        }
        if last {
            let _ = exporter.shutdown_with_timeout(Duration::from_secs(2));
            return;
        }
    }
}

/// The MCP method's span, in the request's extensions, so the backend call (run
/// by rmcp in its own task) opens its span under it.
#[derive(Clone)]
pub struct CallSpan(pub tracing::Span);

/// A W3C trace context (`traceparent`, `tracestate`), as received or to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    /// The remote parent these headers name, if they are valid.
    pub fn context(&self) -> Option<Context> {
        self.traceparent.as_ref()?;
        let cx = TraceContextPropagator::new().extract(&Extract(self));
        cx.span().span_context().is_valid().then_some(cx)
    }

    /// The trace context of `span` (none when it is not exported).
    pub fn of(span: &tracing::Span) -> Option<TraceHeaders> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut out = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut out);
        Some(TraceHeaders {
            traceparent: out.remove("traceparent"),
            tracestate: out.remove("tracestate").filter(|s| !s.is_empty()),
        })
    }
}

struct Extract<'a>(&'a TraceHeaders);

impl opentelemetry::propagation::Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Make `parent` (a remote context) the parent of `span`, before `span` starts.
pub fn set_remote_parent(span: &tracing::Span, parent: &TraceHeaders) -> bool {
    match parent.context() {
        Some(cx) => span.set_parent(cx).is_ok(),
        None => false,
    }
}

/// Make `span` a child of `parent` (both edge spans; `span` not started yet).
pub fn adopt(span: &tracing::Span, parent: &tracing::Span) {
    if !span.is_disabled() && !parent.is_disabled() {
        let _ = span.set_parent(parent.context());
    }
}

/// The trace id of `span`, for the audit record and logs.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let id = span.context().span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_a_remote_parent_and_garbage_is_not() {
        let good = TraceHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("vendor=x".into()),
        };
        let cx = good.context().expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote() && sc.is_sampled());
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let h = TraceHeaders {
                traceparent: Some(bad.into()),
                tracestate: None,
            };
            assert!(h.context().is_none(), "{bad:?}");
        }
    }
}
