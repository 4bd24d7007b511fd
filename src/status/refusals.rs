//! Recent refusals, counted by reason per minute, with the principals refused by
//! their rate limit: fed by the access log for refused requests only (a served
//! request costs nothing), read by the status page. Bounded: ten minutes of
//! one-minute buckets, a capped set of principals per bucket, the last few refusals.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::sync::lock;

/// Minutes of refusals kept.
pub const WINDOW_MINUTES: u64 = 10;
/// Refusals listed one by one.
const RECENT: usize = 20;
/// Principals counted per minute (past it the rest are not named).
const MAX_PRINCIPALS: usize = 100;

/// One refused request.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub at_unix: u64,
    /// [`crate::server`]'s refusal reason (`rate_limited`, `invalid_key`, …).
    pub reason: &'static str,
    pub principal: Option<Arc<str>>,
    pub status: u16,
    pub tool: Option<String>,
}

#[derive(Default)]
struct Minute {
    minute: u64,
    by_reason: Vec<(&'static str, u64)>,
    /// Principals refused by their rate limit: (principal, count, last time).
    limited: Vec<(Arc<str>, u64, u64)>,
}

#[derive(Default)]
struct Inner {
    minutes: VecDeque<Minute>,
    recent: VecDeque<Refusal>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Refusals {
    inner: Mutex<Inner>,
}

/// A principal refused by its rate limit in the window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Limited {
    pub principal: Arc<str>,
    pub refusals: u64,
    pub last_unix: u64,
}

/// What the window holds.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalsView {
    pub window_seconds: u64,
    /// Count by reason, most first.
    pub by_reason: Vec<ReasonCount>,
    pub rate_limited: Vec<Limited>,
    /// The last refusals, newest first.
    pub recent: Vec<Refusal>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub count: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Refusals {
    pub fn new() -> Arc<Refusals> {
        Arc::new(Refusals::default())
    }

    /// Count one refused request (called for refusals only).
    pub fn record(
        &self,
        reason: &'static str,
        principal: Option<&Arc<str>>,
        status: u16,
        tool: Option<&str>,
    ) {
        self.record_at(now_unix(), reason, principal, status, tool);
    }

    fn record_at(
        &self,
        at: u64,
        reason: &'static str,
        principal: Option<&Arc<str>>,
        status: u16,
        tool: Option<&str>,
    ) {
        let minute = at / 60;
        let mut inner = lock(&self.inner);
        if inner.minutes.back().is_none_or(|m| m.minute != minute) {
            inner.minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
            while inner
                .minutes
                .front()
                .is_some_and(|m| m.minute + WINDOW_MINUTES <= minute)
            {
                inner.minutes.pop_front();
            }
        }
        if let Some(bucket) = inner.minutes.back_mut() {
            match bucket.by_reason.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => bucket.by_reason.push((reason, 1)),
            }
            if reason == "rate_limited"
                && let Some(p) = principal
            {
                let full = bucket.limited.len() >= MAX_PRINCIPALS;
                match bucket.limited.iter_mut().find(|(q, ..)| q == p) {
                    Some((_, n, last)) => {
                        *n += 1;
                        *last = at;
                    }
                    None if !full => bucket.limited.push((p.clone(), 1, at)),
                    None => {}
                }
            }
        }
        if inner.recent.len() >= RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(Refusal {
            at_unix: at,
            reason,
            principal: principal.cloned(),
            status,
            tool: tool.map(|t| t.chars().take(128).collect()),
        });
    }

    /// The last [`WINDOW_MINUTES`] minutes.
    pub fn view(&self) -> RefusalsView {
        self.view_at(now_unix())
    }

    fn view_at(&self, now: u64) -> RefusalsView {
        let inner = lock(&self.inner);
        let current = now / 60;
        let mut by_reason: Vec<ReasonCount> = Vec::new();
        let mut limited: Vec<Limited> = Vec::new();
        for m in inner
            .minutes
            .iter()
            .filter(|m| m.minute + WINDOW_MINUTES > current)
        {
            for (reason, n) in &m.by_reason {
                match by_reason.iter_mut().find(|c| c.reason == *reason) {
                    Some(c) => c.count += n,
                    None => by_reason.push(ReasonCount { reason, count: *n }),
                }
            }
            for (p, n, last) in &m.limited {
                match limited.iter_mut().find(|l| l.principal == *p) {
                    Some(l) => {
                        l.refusals += n;
                        l.last_unix = l.last_unix.max(*last);
                    }
                    None => limited.push(Limited {
                        principal: p.clone(),
                        refusals: *n,
                        last_unix: *last,
                    }),
                }
            }
        }
        by_reason.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(b.reason)));
        limited.sort_by_key(|l| std::cmp::Reverse(l.last_unix));
        let cutoff = (current + 1).saturating_sub(WINDOW_MINUTES) * 60;
        RefusalsView {
            window_seconds: WINDOW_MINUTES * 60,
            by_reason,
            rate_limited: limited,
            recent: inner
                .recent
                .iter()
                .rev()
                .filter(|r| r.at_unix >= cutoff)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_names_rate_limited_principals_within_the_window() {
        let r = Refusals::default();
        let carol: Arc<str> = "carol".into();
        let t0 = 1_000_020;
        r.record_at(t0, "rate_limited", Some(&carol), 429, Some("search"));
        r.record_at(t0 + 1, "rate_limited", Some(&carol), 429, None);
        r.record_at(t0 + 2, "missing", None, 401, None);
        let v = r.view_at(t0 + 3);
        assert_eq!(
            v.by_reason,
            [
                ReasonCount {
                    reason: "rate_limited",
                    count: 2
                },
                ReasonCount {
                    reason: "missing",
                    count: 1
                }
            ]
        );
        assert_eq!(
            v.rate_limited,
            [Limited {
                principal: carol.clone(),
                refusals: 2,
                last_unix: t0 + 1
            }]
        );
        assert_eq!(v.recent.len(), 3);
        assert_eq!(v.recent[0].reason, "missing");
        // Eleven minutes on, it has all left the window (and the buckets are dropped
        // as new ones come).
        let later = t0 + 11 * 60;
        assert!(r.view_at(later).by_reason.is_empty());
        assert!(r.view_at(later).recent.is_empty());
        r.record_at(later, "invalid_key", None, 401, None);
        assert_eq!(lock(&r.inner).minutes.len(), 1);
        for i in 0..100 {
            r.record_at(later, "missing", None, 401, None);
            let _ = i;
        }
        assert_eq!(lock(&r.inner).recent.len(), RECENT);
    }
}
