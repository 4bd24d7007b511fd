//! Calls per second and errors by tool over the last minutes: a background task
//! samples the tool-call counts the metrics already keep (`metrics::tool_call_counts`)
//! every [`SAMPLE_EVERY`], keeping [`SAMPLES`] of them. Nothing is added to the
//! request path: the counts are the Prometheus histogram's, read as a scrape reads them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::sync::lock;

/// How often the counts are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: five minutes.
pub const SAMPLES: usize = 61;
/// Tools listed at most (the busiest).
const MAX_TOOLS: usize = 25;

/// (tool, backend) → (calls, errors) so far.
type Counts = BTreeMap<(String, String), (u64, u64)>;

struct Sample {
    at_ms: u64,
    counts: Counts,
}

/// The samples (see the module documentation).
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// One interval of the chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// The interval's end.
    pub at_unix: u64,
    pub calls_per_second: f64,
    pub errors_per_second: f64,
}

/// A tool's calls and errors (any outcome but `ok`) over the window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ToolCalls {
    pub tool: String,
    pub backend: String,
    pub calls: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallsView {
    /// How far back the figures reach now (up to five minutes).
    pub window_seconds: u64,
    pub sample_seconds: u64,
    /// Over the last interval.
    pub calls_per_second: f64,
    pub errors_per_second: f64,
    pub calls: u64,
    pub errors: u64,
    /// Oldest first.
    pub series: Vec<Point>,
    /// Busiest first.
    pub by_tool: Vec<ToolCalls>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The counts recorded so far, by (tool, backend).
fn current() -> Counts {
    let mut counts = Counts::new();
    for c in crate::metrics::tool_call_counts() {
        let entry = counts.entry((c.tool, c.backend)).or_default();
        entry.0 += c.count;
        if c.outcome != "ok" {
            entry.1 += c.count;
        }
    }
    counts
}

fn totals(counts: &Counts) -> (u64, u64) {
    counts
        .values()
        .fold((0, 0), |(c, e), (c2, e2)| (c + c2, e + e2))
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History::default())
    }

    /// Take one sample now.
    pub fn sample(&self) {
        self.push(now_ms(), current());
    }

    fn push(&self, at_ms: u64, counts: Counts) {
        let mut samples = lock(&self.samples);
        if samples.len() >= SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample { at_ms, counts });
    }

    /// Sample every [`SAMPLE_EVERY`] until aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                history.sample();
            }
        })
    }

    /// The window, up to now (the counts read now close the last interval).
    pub fn view(&self) -> CallsView {
        self.view_with(now_ms(), current())
    }

    fn view_with(&self, now: u64, latest: Counts) -> CallsView {
        let samples = lock(&self.samples);
        let mut points: Vec<(u64, (u64, u64))> = samples
            .iter()
            .map(|s| (s.at_ms, totals(&s.counts)))
            .collect();
        // The live figures end the series unless a sample was just taken.
        if points.last().is_none_or(|(at, _)| now >= at + 1000) {
            points.push((now, totals(&latest)));
        }
        let series: Vec<Point> = points
            .windows(2)
            .map(|w| {
                let secs = (w[1].0.saturating_sub(w[0].0)).max(1) as f64 / 1000.0;
                Point {
                    at_unix: w[1].0 / 1000,
                    calls_per_second: w[1].1.0.saturating_sub(w[0].1.0) as f64 / secs,
                    errors_per_second: w[1].1.1.saturating_sub(w[0].1.1) as f64 / secs,
                }
            })
            .collect();
        let oldest = samples.front();
        let mut by_tool: Vec<ToolCalls> = latest
            .iter()
            .filter_map(|((tool, backend), (calls, errors))| {
                let (c0, e0) = oldest
                    .and_then(|s| s.counts.get(&(tool.clone(), backend.clone())))
                    .copied()
                    .unwrap_or((0, 0));
                let calls = calls.saturating_sub(c0);
                (calls > 0).then(|| ToolCalls {
                    tool: tool.clone(),
                    backend: backend.clone(),
                    calls,
                    errors: errors.saturating_sub(e0),
                })
            })
            .collect();
        by_tool.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.tool.cmp(&b.tool)));
        by_tool.truncate(MAX_TOOLS);
        let last = series.last();
        CallsView {
            window_seconds: oldest.map_or(0, |s| now.saturating_sub(s.at_ms) / 1000),
            sample_seconds: SAMPLE_EVERY.as_secs(),
            calls_per_second: last.map_or(0.0, |p| p.calls_per_second),
            errors_per_second: last.map_or(0.0, |p| p.errors_per_second),
            calls: by_tool.iter().map(|t| t.calls).sum(),
            errors: by_tool.iter().map(|t| t.errors).sum(),
            series,
            by_tool,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(&str, u64, u64)]) -> Counts {
        entries
            .iter()
            .map(|(t, c, e)| ((t.to_string(), "b".to_string()), (*c, *e)))
            .collect()
    }

    #[test]
    fn rates_per_interval_and_calls_by_tool_over_the_window() {
        let h = History::default();
        h.push(0, counts(&[("search", 10, 0)]));
        h.push(5_000, counts(&[("search", 20, 1)]));
        let v = h.view_with(10_000, counts(&[("search", 30, 1), ("fetch", 5, 5)]));
        assert_eq!(v.series.len(), 2);
        assert_eq!(v.series[0].calls_per_second, 2.0);
        assert_eq!(v.series[0].errors_per_second, 0.2);
        assert_eq!(v.calls_per_second, 3.0);
        assert_eq!(v.errors_per_second, 1.0);
        assert_eq!(v.window_seconds, 10);
        assert_eq!(
            v.by_tool,
            [
                ToolCalls {
                    tool: "search".into(),
                    backend: "b".into(),
                    calls: 20,
                    errors: 1
                },
                ToolCalls {
                    tool: "fetch".into(),
                    backend: "b".into(),
                    calls: 5,
                    errors: 5
                }
            ]
        );
        assert_eq!((v.calls, v.errors), (25, 6));
        for i in 0..(SAMPLES as u64 + 10) {
            h.push(20_000 + i * 5000, Counts::new());
        }
        assert_eq!(lock(&h.samples).len(), SAMPLES);
    }
}
