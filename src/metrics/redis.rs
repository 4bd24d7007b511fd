//! Metrics of the shared (Redis) limiter store.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

type LatencyFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~0.8 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

pub(super) struct RedisMetrics {
    latency: LatencyFamily,
    errors: Family<OpLabels, Counter>,
    skipped: Family<OpLabels, Counter>,
    fallback_active: Gauge,
    fallback_decisions: Family<OpLabels, Counter>,
}

pub(super) static REDIS: LazyLock<RedisMetrics> = LazyLock::new(|| RedisMetrics {
    latency: LatencyFamily::new_with_constructor(latency_histogram),
    errors: Family::default(),
    skipped: Family::default(),
    fallback_active: Gauge::default(),
    fallback_decisions: Family::default(),
});

pub(super) fn register(registry: &mut Registry) {
    let m = &*REDIS;
    registry.register(
        "redis_command_duration_seconds",
        "Latency of commands to the shared Redis store, by operation (principal, failed_auth, session_admit, session_put, session_remove)",
        m.latency.clone(),
    );
    registry.register(
        "redis_errors",
        "Redis commands that failed or timed out, by operation",
        m.errors.clone(),
    );
    registry.register(
        "redis_skipped",
        "Redis commands not sent because Redis was unreachable (waiting for the next probe), by operation",
        m.skipped.clone(),
    );
    registry.register(
        "redis_fallback_active",
        "1 while Redis is unreachable and the configured fallback applies, else 0",
        m.fallback_active.clone(),
    );
    registry.register(
        "redis_fallback_decisions",
        "Rate-limit decisions made by this replica's share of the budget because Redis was unreachable, by limit",
        m.fallback_decisions.clone(),
    );
}

/// One command to Redis and how long it took.
pub fn redis_call(op: &'static str, latency: Duration, ok: bool) {
    let m = &*REDIS;
    m.latency
        .get_or_create(&OpLabels { op })
        .observe(latency.as_secs_f64());
    if !ok {
        m.errors.get_or_create(&OpLabels { op }).inc();
    }
}

/// A command not sent: Redis is down and not due for a probe.
pub fn redis_skipped(op: &'static str) {
    REDIS.skipped.get_or_create(&OpLabels { op }).inc();
}

/// Whether the fallback is in force now.
pub fn set_redis_fallback(active: bool) {
    REDIS.fallback_active.set(i64::from(active));
}

/// A decision made locally because Redis was unreachable.
pub fn redis_fallback_decision(limit: &'static str) {
    REDIS
        .fallback_decisions
        .get_or_create(&OpLabels { op: limit })
        .inc();
}
