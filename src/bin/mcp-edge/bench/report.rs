//! The summary of a run: percentiles, the report line and JSON, and the
//! failures printed at the end.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::options::{BenchArgs, BenchError};
use super::stats::{MAX_DISTINCT_ERRORS, Stats};

/// Print the report and the failures; an error when any request failed.
pub(super) fn finish(
    args: &BenchArgs,
    total: &mut Stats,
    warm_until: Instant,
) -> Result<(), BenchError> {
    let report = Report::new(args, total, warm_until);
    println!("{}", report.line());
    if args.json {
        println!("{}", report.json());
    }
    if total.delete_failed > 0 {
        eprintln!(
            "bench: warning: {} session(s) could not be closed with DELETE",
            total.delete_failed
        );
    }
    let failed = total.failed + total.warmup_failed;
    if failed > 0 {
        eprintln!("bench: failures (first {MAX_DISTINCT_ERRORS} distinct):");
        for e in &total.errors.list {
            eprintln!("  {}x {}", e.count, e.failure.key);
            if let Some(detail) = &e.failure.detail {
                eprintln!("      body: {detail}");
            }
        }
        if total.errors.other > 0 {
            eprintln!("  {}x (other messages)", total.errors.other);
        }
        return Err(BenchError::Failed {
            failed,
            total: total.ok + total.failed + total.warmup_ok + total.warmup_failed,
        });
    }
    Ok(())
}

/// Nearest-rank percentile of sorted samples (0 when empty).
pub(super) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn fmt_ms(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}

struct Report {
    mode: &'static str,
    http: String,
    concurrency: u32,
    elapsed: Duration,
    requests: u64,
    ok: u64,
    failed: u64,
    rate_limited: u64,
    warmup_requests: u64,
    warmup_failed: u64,
    rps: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: u64,
    tool: String,
}

impl Report {
    fn new(args: &BenchArgs, stats: &mut Stats, measure_start: Instant) -> Report {
        stats.latencies_us.sort_unstable();
        let l = &stats.latencies_us;
        let elapsed = stats
            .last_done
            .map(|d| d.saturating_duration_since(measure_start))
            .unwrap_or_default();
        let requests = stats.ok + stats.failed;
        let secs = elapsed.as_secs_f64();
        let mean = if l.is_empty() {
            0
        } else {
            l.iter().sum::<u64>() / l.len() as u64
        };
        Report {
            mode: args.mode.as_str(),
            http: stats.versions.iter().cloned().collect::<Vec<_>>().join("+"),
            concurrency: args.concurrency,
            elapsed,
            requests,
            ok: stats.ok,
            failed: stats.failed,
            rate_limited: stats.rate_limited,
            warmup_requests: stats.warmup_ok + stats.warmup_failed,
            warmup_failed: stats.warmup_failed,
            rps: if secs > 0.0 {
                stats.ok as f64 / secs
            } else {
                0.0
            },
            p50: percentile(l, 50.0),
            p90: percentile(l, 90.0),
            p99: percentile(l, 99.0),
            max: l.last().copied().unwrap_or(0),
            mean,
            tool: args.tool.clone(),
        }
    }

    fn line(&self) -> String {
        let mut s = format!(
            "mode={} http={} concurrency={} duration={:.1}s requests={} ok={} failed={} rps={:.1} p50={} p90={} p99={} max={}",
            self.mode,
            if self.http.is_empty() {
                "-"
            } else {
                &self.http
            },
            self.concurrency,
            self.elapsed.as_secs_f64(),
            self.requests,
            self.ok,
            self.failed,
            self.rps,
            fmt_ms(self.p50),
            fmt_ms(self.p90),
            fmt_ms(self.p99),
            fmt_ms(self.max),
        );
        if self.rate_limited > 0 {
            let _ = write!(s, " rate_limited={}", self.rate_limited);
        }
        if self.warmup_failed > 0 {
            let _ = write!(
                s,
                " warmup_failed={}/{}",
                self.warmup_failed, self.warmup_requests
            );
        }
        s
    }

    fn json(&self) -> Value {
        let ms = |us: u64| us as f64 / 1000.0;
        json!({
            "mode": self.mode,
            "http": self.http,
            "tool": self.tool,
            "concurrency": self.concurrency,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "rate_limited": self.rate_limited,
            "warmup_requests": self.warmup_requests,
            "warmup_failed": self.warmup_failed,
            "rps": self.rps,
            "latency_ms": {
                "p50": ms(self.p50),
                "p90": ms(self.p90),
                "p99": ms(self.p99),
                "max": ms(self.max),
                "mean": ms(self.mean),
            },
        })
    }
}
