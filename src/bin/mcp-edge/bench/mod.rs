//! `mcp-edge bench`: drive tools/call over HTTPS and report throughput and latency.
//!
//! Every worker owns one logical MCP client (a session in `session` mode, nothing
//! in `stateless` mode) and sends one `tools/call` at a time; `--concurrency`
//! workers run side by side over one shared connection pool. Every reply is
//! checked: a JSON-RPC `result` must be present and `result.isError` must not be
//! true. Anything else is a failure, counted and reported, and makes the command
//! exit non-zero.

mod client;
mod headers;
mod options;
mod reply;
mod report;
mod sse;
mod stats;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use options::{BenchArgs, BenchError};
use reply::Failure;
use stats::Stats;
use worker::Phase;

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    mcp_edge::tls::install_crypto_provider();
    let shared = Arc::new(client::connect(args).await?);

    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    eprintln!(
        "bench: {} mode={} tool={} concurrency={} warmup={} duration={}{}",
        shared.url,
        args.mode.as_str(),
        args.tool,
        args.concurrency,
        humantime::format_duration(args.warmup),
        duration.map_or_else(
            || "unlimited".to_owned(),
            |d| humantime::format_duration(d).to_string()
        ),
        args.requests
            .map(|n| format!(" requests={n}"))
            .unwrap_or_default(),
    );

    let (phase_tx, workers) = worker::start(&shared, args.concurrency).await?;

    let start = Instant::now();
    let warm_until = start + args.warmup;
    let end = duration.map(|d| warm_until + d);
    let _ = phase_tx.send(Phase::Go { warm_until, end });
    let ctrl_c = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("bench: interrupted, finishing in-flight requests");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let mut total = Stats::default();
    for w in workers {
        match w.await {
            Ok(stats) => total.merge(stats),
            Err(e) => {
                total.failed += 1;
                total
                    .errors
                    .add(Failure::new(format!("worker crashed: {e}")));
            }
        }
    }
    ctrl_c.abort();

    report::finish(args, &mut total, warm_until)
}
