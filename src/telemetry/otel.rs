//! Traces over OTLP: the exporter (gRPC or HTTP/protobuf), a bounded batch whose
//! drops are counted, W3C trace-context helpers, and the span names the edge uses.
//!
//! Spans are `tracing` spans with the target [`TARGET`]; only the OpenTelemetry
//! layer sees them (the log output filters them out), and with no endpoint
//! configured no layer enables them, so a disabled span costs one cached check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, SpanData,
    SpanExporter, SpanProcessor,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtelConfig, OtlpProtocol};
use crate::sync::lock;

/// The `tracing` target of every span exported as a trace.
pub const TARGET: &str = "mcp_edge::otel";

/// The root span's attribute for a request forwarded by another replica, and its
/// value: such a root continues a trace under way, and [`Shedding`] treats its
/// remote parent as it does a local one.
pub const HOP: &str = "mcp_edge.hop";
pub const FROM_PEER: &str = "from peer";

/// Spans waiting for export (or being exported) beyond this are dropped and counted
/// in `mcp_edge_trace_spans_dropped_total`: a slow collector never holds memory
/// or requests.
const MAX_QUEUED: usize = 8192;
/// A new trace is shed (not sampled) while this many spans are waiting: room for
/// the spans of traces already under way (a request makes about five).
const SHED_ABOVE: usize = MAX_QUEUED - 1024;
/// Spans per export request. A full batch is sent at once; fewer wait at most
/// [`EXPORT_EVERY`].
const BATCH: usize = 512;
const EXPORT_EVERY: Duration = Duration::from_millis(500);
/// After a failed export no new trace starts until the collector answers again: a
/// collector that is down costs no spans built only to be dropped. It is probed
/// with an empty export after this long, doubling with each failure up to
/// [`MAX_PROBE_EVERY`].
const FIRST_PROBE_AFTER: Duration = Duration::from_secs(1);
const MAX_PROBE_EVERY: Duration = Duration::from_secs(8);

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
    let queue = Arc::new(Queue::default());
    // One exporter per process (the subscriber is global); a second install (tests
    // starting several edges in one process) keeps the first queue, as the
    // subscriber does.
    let _ = EXPORT_QUEUE.set(queue.clone());
    let budget = TraceBudget::per_second(config.max_traces_per_second);
    if let Some(budget) = &budget {
        let _ = TRACE_BUDGET.set(budget.clone());
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(export_loop(
        exporter,
        queue.clone(),
        stop.clone(),
        EXPORT_EVERY,
    ));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Batcher {
            queue: queue.clone(),
        })
        .with_sampler(Shedding {
            ratio: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))),
            queue,
            budget,
        })
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

/// Finished spans waiting for the export loop, and whether new traces are shed.
#[derive(Debug, Default)]
struct Queue {
    spans: Mutex<Vec<SpanData>>,
    /// `spans.len()`, read without the lock: every request asks.
    len: AtomicUsize,
    /// The last export failed: no new trace until the collector answers again.
    paused: AtomicBool,
    /// A full batch is waiting: the export loop sends it without waiting for its
    /// tick (at a steady few thousand traces a second the tick alone let the queue
    /// fill, and traces were shed while the collector kept up).
    batch_ready: tokio::sync::Notify,
}

impl Queue {
    /// Why a new trace would only be built to be dropped: the queue is nearly
    /// full, or the collector is failing. The `reason` label of
    /// `mcp_edge_traces_shed_total`.
    fn shed_reason(&self) -> Option<&'static str> {
        if self.paused() {
            Some("collector_down")
        } else if self.len.load(Ordering::Relaxed) >= SHED_ABOVE {
            Some("queue_full")
        } else {
            None
        }
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Queue `span`; false when the queue is full.
    fn push(&self, span: SpanData) -> bool {
        let mut spans = lock(&self.spans);
        if spans.len() >= MAX_QUEUED {
            return false;
        }
        spans.push(span);
        self.len.store(spans.len(), Ordering::Relaxed);
        if spans.len() == BATCH {
            self.batch_ready.notify_one();
        }
        true
    }

    fn take(&self) -> Vec<SpanData> {
        let mut spans = lock(&self.spans);
        self.len.store(0, Ordering::Relaxed);
        std::mem::take(&mut *spans)
    }

    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }
}

/// Finished spans wait in the [`Queue`] for the export loop. Why not the SDK's batch
/// processor: it hands every span to its task through a channel (a task wake-up
/// per span); a push under a short lock is cheaper on the request path.
#[derive(Debug)]
struct Batcher {
    queue: Arc<Queue>,
}

impl SpanProcessor for Batcher {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if !self.queue.push(span) {
            crate::metrics::trace_spans_dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export queue and the trace budget, for [`shed_new_trace`].
static EXPORT_QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();
static TRACE_BUDGET: OnceLock<Arc<TraceBudget>> = OnceLock::new();

/// The trace exporter now, for the status page: spans waiting to be sent, and
/// whether exports are failing (new traces paused until the collector answers).
/// `None` when traces are not exported.
pub fn exporter_state() -> Option<(usize, bool)> {
    EXPORT_QUEUE
        .get()
        .map(|q| (q.len.load(Ordering::Relaxed), q.paused()))
}

/// Would a new trace be shed (the export queue nearly full, the collector failing,
/// or the trace budget spent)? The edge asks before it opens a request's first span: a trace shed by
/// the sampler still costs the spans opened before the body names its parent, and
/// at saturation that was most of what traces cost. Counted as shed.
pub fn shed_new_trace() -> bool {
    let reason = EXPORT_QUEUE
        .get()
        .and_then(|q| q.shed_reason())
        .or_else(|| {
            TRACE_BUDGET
                .get()
                .is_some_and(|b| b.spent())
                .then_some("budget")
        });
    match reason {
        Some(reason) => {
            crate::metrics::trace_shed(reason);
            true
        }
        None => false,
    }
}

/// `otel.max_traces_per_second`: new traces sampled beyond it are shed (reason
/// `budget`). A traced call costs about a third more CPU than an untraced one
/// (span building and OTLP encoding), so at saturation tracing every call would
/// cost a third of the throughput; the budget bounds that cost, and the load on
/// the collector, while every trace is kept below it.
#[derive(Debug)]
struct TraceBudget {
    limiter: governor::DefaultDirectRateLimiter,
    /// Until when (nanoseconds after `created`) the budget is known to be spent:
    /// [`shed_new_trace`] sheds before the request's first span is built (a trace
    /// shed at the sampler has already cost the spans opened before it).
    spent_until: AtomicU64,
    created: Instant,
}

impl TraceBudget {
    /// None for 0 (no limit).
    fn per_second(traces: u32) -> Option<Arc<TraceBudget>> {
        let traces = std::num::NonZeroU32::new(traces)?;
        Some(Arc::new(TraceBudget {
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(traces)),
            spent_until: AtomicU64::new(0),
            created: Instant::now(),
        }))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Take one trace from the budget; false when this second's is spent.
    fn take(&self) -> bool {
        use governor::clock::Clock;
        match self.limiter.check() {
            Ok(()) => true,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.spent_until
                    .store(self.now().saturating_add(wait), Ordering::Relaxed);
                false
            }
        }
    }

    /// Is the budget spent (no trace could be taken now)?
    fn spent(&self) -> bool {
        self.now() < self.spent_until.load(Ordering::Relaxed)
    }
}

/// Whole traces are shed, never parts of them: while the export queue is nearly
/// full (a slow collector, or more traffic than the exporter can encode and send),
/// for a while after a failed export, or past the trace budget, a new trace is not
/// sampled, and counted. A trace is then either complete or absent, and no span is
/// built only to be thrown away at the queue. Spans under a local parent follow
/// its decision.
#[derive(Debug, Clone)]
struct Shedding {
    ratio: Sampler,
    queue: Arc<Queue>,
    budget: Option<Arc<TraceBudget>>,
}

impl ShouldSample for Shedding {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let under_way = parent.is_some_and(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid()
                && (!sc.is_remote()
                    || attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == HOP && kv.value.as_str() == FROM_PEER))
        });
        let shed = |reason| {
            crate::metrics::trace_shed(reason);
            SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: parent
                    .map(|cx| cx.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            }
        };
        if under_way {
            return self
                .ratio
                .should_sample(parent, trace_id, name, kind, attributes, links);
        }
        if let Some(reason) = self.queue.shed_reason() {
            return shed(reason);
        }
        let decided = self
            .ratio
            .should_sample(parent, trace_id, name, kind, attributes, links);
        // Only a trace the ratio keeps spends the budget.
        if decided.decision == SamplingDecision::RecordAndSample
            && self.budget.as_ref().is_some_and(|b| !b.take())
        {
            return shed("budget");
        }
        decided
    }
}

/// Every `every`, or as soon as a batch is full, send what is pending in batches
/// of [`BATCH`]. A batch
/// that fails is counted and dropped with the rest of the round (no retry queue to
/// grow; they would fail as well), and new traces pause until an empty export
/// (the probe, backing off) succeeds. On stop, one last round, then the
/// exporter's shutdown.
async fn export_loop<E: SpanExporter>(
    exporter: E,
    queue: Arc<Queue>,
    stop: Arc<tokio::sync::Notify>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_every = FIRST_PROBE_AFTER;
    let mut next_probe = Instant::now();
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            () = queue.batch_ready.notified() => false,
            () = stop.notified() => true,
        };
        let mut spans = queue.take();
        if queue.paused() {
            // Spans of traces under way when the export failed: they would fail too.
            crate::metrics::trace_spans_dropped(spans.len() as u64);
            if !last && Instant::now() >= next_probe {
                match exporter.export(Vec::new()).await {
                    Ok(()) => {
                        probe_every = FIRST_PROBE_AFTER;
                        queue.set_paused(false);
                        tracing::info!("trace collector reachable again: traces resume");
                    }
                    Err(_) => {
                        crate::metrics::trace_export_failed();
                        next_probe = Instant::now() + probe_every;
                        probe_every = (probe_every * 2).min(MAX_PROBE_EVERY);
                    }
                }
            }
            spans.clear();
        }
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(BATCH));
            let n = spans.len();
            if let Err(e) = exporter.export(spans).await {
                crate::metrics::trace_export_failed();
                crate::metrics::trace_spans_dropped(rest.len() as u64);
                tracing::warn!(error = %e, spans = n, "trace export failed: new traces pause until the collector answers");
                queue.set_paused(true);
                next_probe = Instant::now() + probe_every;
                probe_every = (probe_every * 2).min(MAX_PROBE_EVERY);
                break;
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

/// The OpenTelemetry context of `span` (an edge span, not disabled). Starts the
/// span if it had not started: call it once its parent is known.
pub fn context(span: &tracing::Span) -> Context {
    span.context()
}

/// Make `span` (not started yet) a child of the span of `parent`.
pub fn adopt(span: &tracing::Span, parent: Context) {
    if !span.is_disabled() {
        let _ = span.set_parent(parent);
    }
}

/// Will the span of `cx` be exported? (Its trace was sampled, and not shed.)
pub fn is_sampled(cx: &Context) -> bool {
    cx.span().span_context().is_sampled()
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

    fn span() -> SpanData {
        SpanData {
            span_context: opentelemetry::trace::SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "s".into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: opentelemetry::trace::Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// A sampled span of this process (a trace under way).
    fn local_parent() -> Context {
        Context::new().with_remote_span_context(opentelemetry::trace::SpanContext::new(
            TraceId::from(7),
            opentelemetry::trace::SpanId::from(9),
            opentelemetry::trace::TraceFlags::SAMPLED,
            false,
            Default::default(),
        ))
    }

    /// A client's sampled `traceparent`.
    fn client_parent() -> Context {
        TraceHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
        }
        .context()
        .unwrap()
    }

    #[test]
    fn new_traces_are_shed_while_the_queue_is_nearly_full_or_the_collector_fails() {
        let queue = Arc::new(Queue::default());
        let sampler = Shedding {
            ratio: Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            queue: queue.clone(),
            budget: None,
        };
        let decide = |parent: Option<&Context>| {
            sampler
                .should_sample(parent, TraceId::from(7), "s", &SpanKind::Server, &[], &[])
                .decision
        };
        let local = local_parent();
        let remote = client_parent();
        assert_eq!(decide(None), SamplingDecision::RecordAndSample);
        for _ in 0..SHED_ABOVE {
            assert!(queue.push(span()));
        }
        assert_eq!(decide(None), SamplingDecision::Drop, "a new trace is shed");
        assert_eq!(
            decide(Some(&remote)),
            SamplingDecision::Drop,
            "a client's trace too"
        );
        assert_eq!(
            decide(Some(&local)),
            SamplingDecision::RecordAndSample,
            "a span of a trace under way is kept"
        );
        assert_eq!(queue.take().len(), SHED_ABOVE);
        assert_eq!(decide(Some(&remote)), SamplingDecision::RecordAndSample);
        // A failed export pauses new traces the same way, until the collector answers.
        queue.set_paused(true);
        assert_eq!(decide(None), SamplingDecision::Drop, "collector failing");
        assert_eq!(decide(Some(&local)), SamplingDecision::RecordAndSample);
        queue.set_paused(false);
        assert_eq!(
            decide(None),
            SamplingDecision::RecordAndSample,
            "answering again"
        );
    }

    #[test]
    fn past_the_budget_new_traces_are_shed_and_spans_of_traces_under_way_are_not() {
        let sampler = |ratio| Shedding {
            ratio: Sampler::ParentBased(Box::new(ratio)),
            queue: Arc::new(Queue::default()),
            budget: TraceBudget::per_second(3),
        };
        let decide = |s: &Shedding, parent: Option<&Context>| {
            s.should_sample(parent, TraceId::from(7), "s", &SpanKind::Server, &[], &[])
                .decision
        };
        let local = local_parent();
        let kept = sampler(Sampler::AlwaysOn);
        for n in 0..3 {
            assert_eq!(
                decide(&kept, None),
                SamplingDecision::RecordAndSample,
                "{n}"
            );
        }
        assert!(!kept.budget.as_ref().unwrap().spent());
        assert_eq!(decide(&kept, None), SamplingDecision::Drop, "budget spent");
        assert!(
            kept.budget.as_ref().unwrap().spent(),
            "known spent: the next request is shed before its first span"
        );
        assert_eq!(
            decide(&kept, Some(&local)),
            SamplingDecision::RecordAndSample,
            "a span of a trace under way is kept"
        );
        // A request forwarded by another replica continues that replica's trace.
        let remote = client_parent();
        let forwarded = [KeyValue::new(HOP, FROM_PEER)];
        let with = |attributes: &[KeyValue]| {
            kept.should_sample(
                Some(&remote),
                TraceId::from(7),
                "s",
                &SpanKind::Server,
                attributes,
                &[],
            )
            .decision
        };
        assert_eq!(with(&[]), SamplingDecision::Drop, "a client's trace is new");
        assert_eq!(with(&forwarded), SamplingDecision::RecordAndSample);
        // Traces the ratio does not keep leave the budget alone.
        let unsampled = sampler(Sampler::AlwaysOff);
        for _ in 0..10 {
            assert_eq!(decide(&unsampled, None), SamplingDecision::Drop);
        }
        assert!(unsampled.budget.as_ref().unwrap().take());
        assert!(TraceBudget::per_second(0).is_none(), "0: no limit");
    }

    /// Records the size of each batch it is given.
    #[derive(Debug, Clone, Default)]
    struct Recording(Arc<Mutex<Vec<usize>>>);

    impl SpanExporter for Recording {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            lock(&self.0).push(batch.len());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_batch_is_exported_without_waiting_for_the_tick() {
        let queue = Arc::new(Queue::default());
        let exporter = Recording::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        let every = Duration::from_secs(3600);
        let task = tokio::spawn(export_loop(
            exporter.clone(),
            queue.clone(),
            stop.clone(),
            every,
        ));
        // The interval's first tick is immediate: let it pass with nothing queued.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..BATCH + 1 {
            assert!(queue.push(span()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&exporter.0).iter().sum::<usize>() < BATCH && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sent: usize = lock(&exporter.0).iter().sum();
        assert!(
            sent >= BATCH,
            "a full batch waited for the tick: {sent} sent"
        );
        stop.notify_one();
        task.await.unwrap();
        assert_eq!(
            lock(&exporter.0).iter().sum::<usize>(),
            BATCH + 1,
            "the rest at stop"
        );
    }
}
