//! Prometheus metrics: every metric the edge exports is defined here, with one small
//! recording function each. Other modules call these functions; nothing else touches
//! the registry.
//!
//! The registry is process-wide (one edge per process in production). Label values
//! that come from clients (tool names) are bounded, so a caller cannot grow the
//! series count without limit.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sync::lock;

mod http;
mod redis;
pub use http::{Outcome, record_request};
pub use redis::{redis_call, redis_fallback_decision, redis_skipped, set_redis_fallback};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// At most this many distinct tool names are used as label values; later ones are
/// counted under `tool="_other"`.
pub const MAX_TOOL_LABELS: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    backend: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    method: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    endpoint: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    source: &'static str,
}

type HistogramFamily = Family<ToolLabels, Histogram, fn() -> Histogram>;

fn tool_histogram() -> Histogram {
    // 5 ms … ~82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    tool_calls: HistogramFamily,
    sessions: Gauge,
    child_processes: Gauge,
    secret_reloads: Family<ReloadLabels, Counter>,
    cert_expiry: Family<CertLabels, Gauge>,
    open_connections: Gauge,
    refused_connections: Family<ReasonLabels, Counter>,
    trace_spans_dropped: Counter,
    traces_shed: Family<ReasonLabels, Counter>,
    trace_export_failures: Counter,
    audit_records_dropped: Counter,
    audit_write_failures: Counter,
    oauth_sign_ins: Family<SignInLabels, Counter>,
    oauth_tokens: Family<GrantLabels, Counter>,
    oauth_refusals: Family<RefusalLabels, Counter>,
    input_required_rounds: Counter,
    request_state_refusals: Family<ReasonLabels, Counter>,
    tool_names: Mutex<HashSet<String>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("mcp_edge");
    let m = Metrics {
        registry: Registry::default(),
        requests: Family::default(),
        auth_failures: Family::default(),
        rate_limited: Family::default(),
        tool_calls: HistogramFamily::new_with_constructor(tool_histogram),
        sessions: Gauge::default(),
        child_processes: Gauge::default(),
        secret_reloads: Family::default(),
        cert_expiry: Family::default(),
        open_connections: Gauge::default(),
        refused_connections: Family::default(),
        trace_spans_dropped: Counter::default(),
        traces_shed: Family::default(),
        trace_export_failures: Counter::default(),
        audit_records_dropped: Counter::default(),
        audit_write_failures: Counter::default(),
        oauth_sign_ins: Family::default(),
        oauth_tokens: Family::default(),
        oauth_refusals: Family::default(),
        input_required_rounds: Counter::default(),
        request_state_refusals: Family::default(),
        tool_names: Mutex::new(HashSet::new()),
    };
    registry.register(
        "http_requests",
        "HTTP requests answered, by route and status code",
        m.requests.clone(),
    );
    registry.register(
        "auth_failures",
        "Requests refused for authentication, by reason (missing, malformed, invalid_key)",
        m.auth_failures.clone(),
    );
    registry.register(
        "rate_limited_requests",
        "Requests refused with 429 by a rate limit: per principal, or failed-auth per client IP",
        m.rate_limited.clone(),
    );
    registry.register(
        "tool_call_duration_seconds",
        "tools/call latency until the response ended, by tool, backend and outcome (ok, tool_error, rpc_error, refused, aborted)",
        m.tool_calls.clone(),
    );
    registry.register(
        "live_sessions",
        "MCP sessions currently open",
        m.sessions.clone(),
    );
    registry.register(
        "child_processes",
        "Backend child processes currently running",
        m.child_processes.clone(),
    );
    registry.register(
        "secret_reloads",
        "Reloads of secret material (certificates, API keys, JWT keys), by kind and result (ok, failed)",
        m.secret_reloads.clone(),
    );
    registry.register(
        "certificate_expiry_timestamp_seconds",
        "Expiry (notAfter, Unix seconds) of the certificate being served, by source (files, acme, self-signed)",
        m.cert_expiry.clone(),
    );
    registry.register(
        "open_connections",
        "Client connections open on the main listener (from accept, TLS handshake included)",
        m.open_connections.clone(),
    );
    registry.register(
        "refused_connections",
        "Connections closed at accept, by reason (max_connections, max_connections_per_ip, proxy_untrusted, proxy_invalid)",
        m.refused_connections.clone(),
    );
    registry.register(
        "trace_spans_dropped",
        "Spans not exported because the exporter queue was full (the collector is slow or down)",
        m.trace_spans_dropped.clone(),
    );
    registry.register(
        "traces_shed",
        "New traces not sampled, by reason (queue_full: the exporter queue was nearly full; collector_down: exports were failing; budget: past otel.max_traces_per_second); whole traces are shed, never parts",
        m.traces_shed.clone(),
    );
    registry.register(
        "trace_export_failures",
        "Batches of spans the OTLP exporter failed to send",
        m.trace_export_failures.clone(),
    );
    registry.register(
        "audit_records_dropped",
        "Audit records not written because the audit writer fell behind",
        m.audit_records_dropped.clone(),
    );
    registry.register(
        "audit_write_failures",
        "Audit records whose write (or file rotation) failed",
        m.audit_write_failures.clone(),
    );
    registry.register(
        "oauth_sign_ins",
        "Sign-ins at the edge's authorization server, by method (api_key) and result (ok, failed, locked_out, denied: the person refused consent)",
        m.oauth_sign_ins.clone(),
    );
    registry.register(
        "oauth_tokens_issued",
        "Access tokens issued, by grant (authorization_code, refresh_token)",
        m.oauth_tokens.clone(),
    );
    registry.register(
        "oauth_refusals",
        "Requests the authorization server refused, by endpoint and reason (the OAuth error code, or refresh_reuse, code_replay, rate_limited, bad_document)",
        m.oauth_refusals.clone(),
    );
    registry.register(
        "input_required_rounds",
        "Backend questions (elicitation, sampling, roots) passed to a stateless client as an input-required result, one per round",
        m.input_required_rounds.clone(),
    );
    registry.register(
        "request_state_refusals",
        "Retries whose requestState was refused, by reason (invalid, foreign_principal, expired, other_request, used, owner_unreachable)",
        m.request_state_refusals.clone(),
    );
    redis::register(&mut registry);
    Metrics { registry, ..m }
});

pub fn input_required_round() {
    METRICS.input_required_rounds.inc();
}

pub fn request_state_refused(reason: &'static str) {
    METRICS
        .request_state_refusals
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

pub fn oauth_sign_in(method: &'static str, result: &'static str) {
    METRICS
        .oauth_sign_ins
        .get_or_create(&SignInLabels { method, result })
        .inc();
}

pub fn oauth_token(grant: &'static str) {
    METRICS
        .oauth_tokens
        .get_or_create(&GrantLabels { grant })
        .inc();
}

pub fn oauth_refused(endpoint: &'static str, reason: &'static str) {
    METRICS
        .oauth_refusals
        .get_or_create(&RefusalLabels { endpoint, reason })
        .inc();
}

/// The label value for a request path: known routes by name, everything else `other`
/// (paths come from clients and must not become unbounded label values).
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/mcp" => "/mcp",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/authorize" | "/authorize/key" | "/authorize/consent" => "/authorize",
        "/token" => "/token",
        "/register" => "/register",
        "/revoke" => "/revoke",
        p if p.starts_with("/.well-known/") => "/.well-known",
        _ => "other",
    }
}

/// One answered HTTP request.
pub fn http_request(path: &str, status: u16) {
    METRICS
        .requests
        .get_or_create(&RequestLabels {
            route: route_label(path),
            status,
        })
        .inc();
}

/// A request refused by authentication (`reason` from [`crate::auth::AuthFailure::reason`]).
pub fn auth_failure(reason: &'static str) {
    METRICS
        .auth_failures
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// A request refused by a rate limit: `"principal"` or `"failed_auth"`.
pub fn rate_limited(limit: &'static str) {
    METRICS
        .rate_limited
        .get_or_create(&LimitLabels { limit })
        .inc();
}

/// A connection accepted on the main listener.
pub fn connection_opened() {
    METRICS.open_connections.inc();
}

/// A counted connection closed.
pub fn connection_closed() {
    METRICS.open_connections.dec();
}

/// A connection closed at accept (`reason` from [`crate::conn::Refusal::label`]).
pub fn connection_refused(reason: &'static str) {
    METRICS
        .refused_connections
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// How a `tools/call` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// A result without `isError`.
    Ok,
    /// A result with `isError: true` (the tool ran and reported a failure).
    ToolError,
    /// A JSON-RPC error (unknown tool, bad arguments, backend failure).
    RpcError,
    /// Refused by the edge before the backend (HTTP 4xx/5xx).
    Refused,
    /// The response stream ended without an answer (client went away, shutdown).
    Aborted,
}

impl ToolOutcome {
    pub fn label(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::ToolError => "tool_error",
            ToolOutcome::RpcError => "rpc_error",
            ToolOutcome::Refused => "refused",
            ToolOutcome::Aborted => "aborted",
        }
    }
}

fn tool_label(tool: &str) -> String {
    let mut names = lock(&METRICS.tool_names);
    if names.contains(tool) {
        return tool.to_owned();
    }
    if names.len() < MAX_TOOL_LABELS && tool.len() <= 128 {
        names.insert(tool.to_owned());
        return tool.to_owned();
    }
    "_other".to_owned()
}

/// One finished `tools/call` served by `backend` (a configured backend's name, or
/// `docs`; `_unknown` when the name matches no backend).
pub fn tool_call(tool: &str, backend: &str, outcome: ToolOutcome, latency: Duration) {
    METRICS
        .tool_calls
        .get_or_create(&ToolLabels {
            tool: tool_label(tool),
            backend: backend.to_owned(),
            outcome: outcome.label(),
        })
        .observe(latency.as_secs_f64());
}

/// Spans dropped at the exporter queue.
pub fn trace_spans_dropped(n: u64) {
    METRICS.trace_spans_dropped.inc_by(n);
}

/// A new trace not sampled, and why (`queue_full`, `collector_down`, `budget`).
pub fn trace_shed(reason: &'static str) {
    METRICS
        .traces_shed
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// A batch of spans the exporter could not send.
pub fn trace_export_failed() {
    METRICS.trace_export_failures.inc();
}

/// An audit record dropped because the writer fell behind.
pub fn audit_record_dropped() {
    METRICS.audit_records_dropped.inc();
}

/// An audit record (or rotation) that could not be written.
pub fn audit_write_failed() {
    METRICS.audit_write_failures.inc();
}

/// MCP sessions open now.
pub fn set_live_sessions(n: usize) {
    METRICS.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// Backend child processes running now (called by the stdio backend as it spawns
/// and reaps children).
pub fn set_child_processes(n: usize) {
    METRICS
        .child_processes
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// A reload of secret material or of the docs index (see [`crate::reload`]). `kind`:
/// e.g. `"tls_certificate"`, `"acme_certificate"`, `"api_keys"`, `"jwt_keys"`, `"jwks"`,
/// `"session_keys"`, `"docs_index"`; `ok`: whether the new content was published (a
/// failed reload keeps the last good value).
pub fn secret_reload(kind: &'static str, ok: bool) {
    METRICS
        .secret_reloads
        .get_or_create(&ReloadLabels {
            kind,
            result: if ok { "ok" } else { "failed" },
        })
        .inc();
}

/// The served certificate's expiry (Unix seconds) from `source`
/// (`"files"`, `"acme"`, `"self-signed"`).
pub fn set_certificate_expiry(source: &'static str, not_after_unix: i64) {
    METRICS
        .cert_expiry
        .get_or_create(&CertLabels { source })
        .set(not_after_unix);
}

/// Finished `tools/call`s so far of one (tool, backend, outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCount {
    pub tool: String,
    pub backend: String,
    pub outcome: String,
    pub count: u64,
}

/// The tool-call counts recorded so far (read by the status page's sampler, off the
/// request path: it encodes the one family, as a scrape does, and reads its counts).
pub fn tool_call_counts() -> Vec<ToolCount> {
    // A private registry holding the same family (not served: `/metrics` renders
    // METRICS.registry), so only the tool-call histogram is encoded.
    const FAMILY: &str = "tool_calls";
    static TOOLS: LazyLock<Registry> = LazyLock::new(|| {
        let mut registry = Registry::default();
        registry.register(FAMILY, "", METRICS.tool_calls.clone());
        registry
    });
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &TOOLS).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("tool_calls_count{"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = parse_labels(labels)?;
            let get = |name: &str| {
                labels
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            Some(ToolCount {
                tool: get("tool"),
                backend: get("backend"),
                outcome: get("outcome"),
                count: value.trim().parse::<f64>().ok()? as u64,
            })
        })
        .collect()
}

/// `a="x",b="y\"z"` → pairs, with the text format's escapes undone.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return Some(out);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// All metrics in the Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}

/// The value of the samples in [`render`] output that carry `labels` (summed over
/// the other labels, as PromQL's `sum` would), e.g.
/// `sample(&text, "mcp_edge_auth_failures_total", &[("reason", "missing")])`.
/// For tests and tools; `None` when no series matches.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if all { value.parse::<f64>().ok() } else { None }
        })
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_text_format() {
        http_request("/mcp", 401);
        auth_failure("missing");
        rate_limited("principal");
        tool_call(
            "unit_test_tool",
            "docs",
            ToolOutcome::Ok,
            Duration::from_millis(3),
        );
        set_child_processes(2);
        secret_reload("unit_test_kind", false);
        set_certificate_expiry("files", 1_900_000_000);
        let text = render();
        assert!(
            sample(
                &text,
                "mcp_edge_http_requests_total",
                &[("route", "/mcp"), ("status", "401")]
            )
            .unwrap()
                >= 1.0,
            "{text}"
        );
        assert!(
            sample(
                &text,
                "mcp_edge_auth_failures_total",
                &[("reason", "missing")]
            )
            .unwrap()
                >= 1.0
        );
        assert!(
            sample(
                &text,
                "mcp_edge_tool_call_duration_seconds_count",
                &[("tool", "unit_test_tool"), ("outcome", "ok")]
            )
            .unwrap()
                >= 1.0
        );
        assert_eq!(
            sample(
                &text,
                "mcp_edge_secret_reloads_total",
                &[("kind", "unit_test_kind"), ("result", "failed")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "mcp_edge_certificate_expiry_timestamp_seconds",
                &[("source", "files")]
            ),
            Some(1_900_000_000.0)
        );
        assert!(text.contains("# TYPE mcp_edge_child_processes gauge"));
        assert!(text.ends_with("# EOF\n"));

        // Then: paths and tool names are bounded label sets (one test, as the
        // registry is shared and the flood would otherwise race the checks above).
        assert_eq!(route_label("/mcp"), "/mcp");
        assert_eq!(route_label("/wp-admin/../x"), "other");
        for i in 0..(MAX_TOOL_LABELS + 10) {
            tool_call(
                &format!("flood-{i}"),
                "docs",
                ToolOutcome::RpcError,
                Duration::ZERO,
            );
        }
        let text = render();
        let tools: HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("mcp_edge_tool_call_duration_seconds_count"))
            .filter_map(|l| l.split("tool=\"").nth(1)?.split('"').next())
            .collect();
        assert!(tools.len() <= MAX_TOOL_LABELS + 1, "{}", tools.len());
        assert!(tools.contains("_other"));

        // The status page reads the same counts, label values unescaped.
        tool_call(
            "we\"ird\\tool",
            "docs",
            ToolOutcome::ToolError,
            Duration::ZERO,
        );
        let counts = tool_call_counts();
        assert!(counts.iter().any(|c| c.tool == "unit_test_tool"
            && c.backend == "docs"
            && c.outcome == "ok"
            && c.count >= 1));
        assert!(
            counts
                .iter()
                .any(|c| c.tool == "_other" || c.tool == "we\"ird\\tool"),
            "{counts:?}"
        );
    }

    #[test]
    fn label_sets_are_parsed_with_escapes() {
        assert_eq!(
            parse_labels(r#"tool="a\"b\\c\nd",outcome="ok""#).unwrap(),
            [
                ("tool".to_owned(), "a\"b\\c\nd".to_owned()),
                ("outcome".to_owned(), "ok".to_owned())
            ]
        );
    }
}
