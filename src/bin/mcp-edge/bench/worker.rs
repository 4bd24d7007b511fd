//! The workers: each runs one logical client, one tools/call at a time, and
//! counts what it saw.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use reqwest::header::HeaderMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::{Shared, close_session, initialize, with_timeout};
use super::options::{BenchError, BenchMode};
use super::reply::{Failure, check_tool_result, read_reply};
use super::stats::Stats;

#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    Setup,
    Go {
        warm_until: Instant,
        end: Option<Instant>,
    },
    Abort,
}

/// Spawn `concurrency` workers and wait until each has its session (or has
/// failed to get one, which aborts them all).
pub(super) async fn start(
    shared: &Arc<Shared>,
    concurrency: u32,
) -> Result<(watch::Sender<Phase>, Vec<JoinHandle<Stats>>), BenchError> {
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(concurrency as usize);
    let mut workers = Vec::with_capacity(concurrency as usize);
    for n in 0..concurrency {
        workers.push(tokio::spawn(worker(
            n,
            shared.clone(),
            phase_rx.clone(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let mut setup_errors = Vec::new();
    while let Some(result) = ready_rx.recv().await {
        if let Err(e) = result {
            setup_errors.push(e);
        }
    }
    if !setup_errors.is_empty() {
        let _ = phase_tx.send(Phase::Abort);
        for w in workers {
            let _ = w.await;
        }
        return Err(BenchError::Setup(format!(
            "{} of {} workers could not start; first error: {}",
            setup_errors.len(),
            concurrency,
            setup_errors[0]
        )));
    }
    Ok((phase_tx, workers))
}

async fn worker(
    n: u32,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) -> Stats {
    let mut stats = Stats::default();
    let mut headers = shared.base_headers();
    headers.extend(shared.call_headers.clone());
    let session = match shared.mode {
        BenchMode::Stateless => None,
        BenchMode::Session => match with_timeout(shared.timeout, initialize(&shared)).await {
            Ok((session, version)) => {
                headers.insert("mcp-session-id", session.id.clone());
                headers.insert("mcp-protocol-version", version);
                Some(session)
            }
            Err(e) => {
                let mut msg = format!("worker {n}: initialize: {}", e.key);
                if let Some(d) = e.detail {
                    let _ = write!(msg, " (body: {d})");
                }
                let _ = ready.send(Err(msg)).await;
                return stats;
            }
        },
    };
    let _ = ready.send(Ok(())).await;
    drop(ready);

    let go = phase
        .wait_for(|p| !matches!(p, Phase::Setup))
        .await
        .map(|p| *p)
        .unwrap_or(Phase::Abort);
    if let Phase::Go { warm_until, end } = go {
        let mut id: u64 = 0;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            if end.is_some_and(|end| now >= end) {
                break;
            }
            let warm = now < warm_until;
            if !warm
                && let Some(limit) = shared.limit
                && shared.issued.fetch_add(1, Ordering::Relaxed) >= limit
            {
                break;
            }
            id += 1;
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{}}}"#,
                shared.params_json
            );
            let sent = Instant::now();
            let mut version = None;
            let outcome = with_timeout(
                shared.timeout,
                call(&shared, headers.clone(), body, id, &mut version),
            )
            .await;
            stats.record(warm, sent, version, outcome);
        }
    }
    if let Some(session) = session
        && !close_session(&shared, &session).await
    {
        stats.delete_failed += 1;
    }
    stats
}

/// One tools/call; notes the HTTP version and returns when the reply was parsed.
async fn call(
    shared: &Shared,
    headers: HeaderMap,
    body: String,
    id: u64,
    version: &mut Option<reqwest::Version>,
) -> Result<Instant, Failure> {
    let response = shared.post_to(&shared.calls_url, headers, body).await?;
    *version = Some(response.version());
    let (message, parsed_at) = read_reply(response, id).await?;
    check_tool_result(&message)?;
    Ok(parsed_at)
}
