//! What the workers count: outcomes, latencies and the distinct errors.

use std::collections::BTreeSet;
use std::time::Instant;

use super::reply::Failure;

/// How many distinct error messages are kept and printed.
pub(super) const MAX_DISTINCT_ERRORS: usize = 5;

pub(super) struct ErrorCount {
    pub(super) failure: Failure,
    pub(super) count: u64,
}

#[derive(Default)]
pub(super) struct Errors {
    pub(super) list: Vec<ErrorCount>,
    pub(super) other: u64,
}

impl Errors {
    pub(super) fn add(&mut self, failure: Failure) {
        self.add_n(failure, 1);
    }

    fn add_n(&mut self, failure: Failure, n: u64) {
        if let Some(e) = self.list.iter_mut().find(|e| e.failure.key == failure.key) {
            e.count += n;
        } else if self.list.len() < MAX_DISTINCT_ERRORS {
            self.list.push(ErrorCount { failure, count: n });
        } else {
            self.other += n;
        }
    }
}

#[derive(Default)]
pub(super) struct Stats {
    /// Measured, successful requests: latency in microseconds.
    pub(super) latencies_us: Vec<u64>,
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) rate_limited: u64,
    pub(super) warmup_ok: u64,
    pub(super) warmup_failed: u64,
    pub(super) errors: Errors,
    pub(super) versions: BTreeSet<String>,
    /// When the last measured request finished.
    pub(super) last_done: Option<Instant>,
    pub(super) delete_failed: u64,
}

impl Stats {
    pub(super) fn record(
        &mut self,
        warm: bool,
        sent: Instant,
        version: Option<reqwest::Version>,
        outcome: Result<Instant, Failure>,
    ) {
        let done = Instant::now();
        if let Some(version) = version {
            self.versions.insert(format!("{version:?}"));
        }
        match outcome {
            Ok(parsed_at) => {
                if warm {
                    self.warmup_ok += 1;
                } else {
                    self.ok += 1;
                    let us = parsed_at.saturating_duration_since(sent).as_micros();
                    self.latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                }
            }
            Err(failure) => {
                if warm {
                    self.warmup_failed += 1;
                } else {
                    self.failed += 1;
                }
                if failure.rate_limited {
                    self.rate_limited += 1;
                }
                self.errors.add(failure);
            }
        }
        if !warm {
            self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        }
    }

    pub(super) fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.failed += other.failed;
        self.rate_limited += other.rate_limited;
        self.warmup_ok += other.warmup_ok;
        self.warmup_failed += other.warmup_failed;
        for e in other.errors.list {
            self.errors.add_n(e.failure, e.count);
        }
        self.errors.other += other.errors.other;
        self.versions.extend(other.versions);
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.delete_failed += other.delete_failed;
    }
}
