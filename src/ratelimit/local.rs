//! The in-process limiters (GCRA via governor): the whole budget with
//! `rate_limit.store = "local"`, the fallback share while Redis is unreachable, and
//! always the per-principal protocol bound.
//!
//! Authenticated requests are limited per principal, with per-principal overrides
//! from the keys file. Requests that fail authentication are limited per client IP,
//! and an IP over that limit is refused *before* its key is checked, so guessing keys
//! is throttled. Keyed state is swept periodically (idle keys evicted) and capped.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use super::Decision;
use crate::auth::Principal;
use crate::config::{Rate, RateLimitConfig};

type Keyed<K> = DefaultKeyedRateLimiter<K, StateInformationMiddleware>;
type Direct = DefaultDirectRateLimiter<StateInformationMiddleware>;

fn quota(rate: Rate, burst: NonZeroU32) -> Quota {
    Quota::with_period(rate.period())
        .unwrap_or_else(|| Quota::per_second(rate.count))
        .allow_burst(burst)
}

struct Override {
    rate: Rate,
    burst: NonZeroU32,
    limiter: Direct,
}

pub struct LocalLimits {
    /// Each replica's share of the budget (1 unless this is the Redis fallback).
    replicas: u32,
    default_rate: Rate,
    default_burst: NonZeroU32,
    per_principal: Keyed<Arc<str>>,
    /// Sharded maps: the per-request reads never wait for one global lock.
    overrides: DashMap<Arc<str>, Arc<Override>>,
    failed_auth_rate: Rate,
    failed_auth_burst: NonZeroU32,
    /// Swapped for a fresh limiter if a flood of new IPs fills it (hard memory bound).
    failed_auth: ArcSwap<Keyed<IpAddr>>,
    /// IPs over the failed-auth limit, refused before any key is checked, until the instant.
    penalties: DashMap<IpAddr, Instant>,
    max_tracked: usize,
    clock: DefaultClock,
}

/// `rate` and `burst` split between `replicas`: the period grows, the burst shrinks
/// (never below 1), so N replicas together stay near the configured budget.
pub fn share(rate: Rate, burst: NonZeroU32, replicas: u32) -> (Rate, NonZeroU32) {
    if replicas <= 1 {
        return (rate, burst);
    }
    let rate = Rate {
        count: rate.count,
        per: rate.per * replicas,
    };
    let burst = NonZeroU32::new(burst.get() / replicas).unwrap_or(NonZeroU32::MIN);
    (rate, burst)
}

impl LocalLimits {
    /// The full budget, in this process only.
    pub fn new(config: &RateLimitConfig) -> LocalLimits {
        Self::with_share(config, 1)
    }

    /// This replica's share (`1 / replicas`) of every budget.
    pub fn with_share(config: &RateLimitConfig, replicas: u32) -> LocalLimits {
        let (default_rate, default_burst) = share(config.rate, config.burst, replicas);
        let (failed_auth_rate, failed_auth_burst) =
            share(config.failed_auth_rate, config.failed_auth_burst, replicas);
        let config = RateLimitConfig {
            failed_auth_rate,
            failed_auth_burst,
            ..config.clone()
        };
        let config = &config;
        LocalLimits {
            replicas,
            default_rate,
            default_burst,
            per_principal: governor::RateLimiter::keyed(quota(default_rate, default_burst))
                .with_middleware::<StateInformationMiddleware>(),
            overrides: DashMap::new(),
            failed_auth_rate: config.failed_auth_rate,
            failed_auth_burst: config.failed_auth_burst,
            failed_auth: ArcSwap::from_pointee(Self::failed_auth_limiter(config)),
            penalties: DashMap::new(),
            max_tracked: config.max_tracked_clients,
            clock: DefaultClock::default(),
        }
    }

    fn failed_auth_limiter(config: &RateLimitConfig) -> Keyed<IpAddr> {
        governor::RateLimiter::keyed(quota(config.failed_auth_rate, config.failed_auth_burst))
            .with_middleware::<StateInformationMiddleware>()
    }

    pub(super) fn decide<T>(
        &self,
        outcome: Result<governor::middleware::StateSnapshot, governor::NotUntil<T>>,
        rate: Rate,
        burst: NonZeroU32,
    ) -> Decision
    where
        T: governor::clock::Reference,
        DefaultClock: Clock<Instant = T>,
    {
        let window = rate
            .per
            .mul_f64(f64::from(burst.get()) / f64::from(rate.count.get()));
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: burst.get(),
                    remaining,
                    reset: rate.period() * (burst.get() - remaining.min(burst.get())),
                    retry_after: None,
                    window,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: burst.get(),
                    remaining: 0,
                    reset: wait,
                    retry_after: Some(wait),
                    window,
                }
            }
        }
    }

    /// Count one request by `name` against the default budget (overrides ignored).
    pub fn check_uniform(&self, name: &Arc<str>) -> Decision {
        if self.per_principal.len() >= self.max_tracked {
            self.per_principal.retain_recent();
        }
        let outcome = self.per_principal.check_key(name);
        self.decide(outcome, self.default_rate, self.default_burst)
    }

    /// Count one request by an authenticated principal.
    pub fn check_principal(&self, principal: &Principal) -> Decision {
        match principal.limit {
            None => self.check_uniform(&principal.name),
            Some((rate, burst)) => {
                let (rate, burst) = share(rate, burst, self.replicas);
                let current = self
                    .overrides
                    .get(&principal.name)
                    .map(|o| o.value().clone())
                    .filter(|o| o.rate == rate && o.burst == burst);
                let limiter = {
                    match current {
                        Some(o) => o,
                        None => {
                            let o = Arc::new(Override {
                                rate,
                                burst,
                                limiter: governor::RateLimiter::direct(quota(rate, burst))
                                    .with_middleware::<StateInformationMiddleware>(),
                            });
                            self.overrides.insert(principal.name.clone(), o.clone());
                            o
                        }
                    }
                };
                let outcome = limiter.limiter.check();
                self.decide(outcome, rate, burst)
            }
        }
    }

    /// Before checking credentials: is this IP locked out for failing auth too often?
    pub fn failed_auth_lockout(&self, ip: IpAddr) -> Option<Decision> {
        let until = *self.penalties.get(&ip)?;
        let now = Instant::now();
        (until > now).then(|| Decision {
            allowed: false,
            limit: self.failed_auth_burst.get(),
            remaining: 0,
            reset: until - now,
            retry_after: Some(until - now),
            window: self.failed_auth_rate.per,
        })
    }

    /// Count one failed authentication from `ip`; refused when over the limit.
    pub fn record_failed_auth(&self, ip: IpAddr) -> Decision {
        let decision = self.count_failed_auth(ip);
        if let Some(wait) = decision.retry_after {
            self.lock_out(ip, wait);
        }
        decision
    }

    /// Refuse `ip` before its credentials are checked for `wait` (also used when
    /// Redis reports a lockout decided elsewhere).
    pub fn lock_out(&self, ip: IpAddr, wait: Duration) {
        let penalties = &self.penalties;
        if penalties.len() >= self.max_tracked {
            let now = Instant::now();
            penalties.retain(|_, until| *until > now);
        }
        if penalties.len() < self.max_tracked {
            penalties.insert(ip, Instant::now() + wait);
        }
    }

    /// The failed-auth budget, for the `RateLimit-*` headers of a lockout.
    pub fn failed_auth_budget(&self) -> (Rate, NonZeroU32) {
        (self.failed_auth_rate, self.failed_auth_burst)
    }

    fn count_failed_auth(&self, ip: IpAddr) -> Decision {
        let mut limiter = self.failed_auth.load_full();
        if limiter.len() >= self.max_tracked {
            limiter.retain_recent();
            if limiter.len() >= self.max_tracked {
                // Still full of recently active IPs: start over rather than grow. Locked-out
                // IPs stay locked out through `penalties`, which is bounded separately.
                limiter = Arc::new(
                    governor::RateLimiter::keyed(quota(
                        self.failed_auth_rate,
                        self.failed_auth_burst,
                    ))
                    .with_middleware::<StateInformationMiddleware>(),
                );
                self.failed_auth.store(limiter.clone());
            }
        }
        let outcome = limiter.check_key(&ip);
        self.decide(outcome, self.failed_auth_rate, self.failed_auth_burst)
    }

    /// Drop state that is indistinguishable from a fresh key, bounding memory.
    pub fn sweep(&self) {
        self.per_principal.retain_recent();
        self.per_principal.shrink_to_fit();
        let failed_auth = self.failed_auth.load();
        failed_auth.retain_recent();
        failed_auth.shrink_to_fit();
        let now = Instant::now();
        self.penalties.retain(|_, until| *until > now);
        if self.overrides.len() > self.max_tracked {
            self.overrides.clear();
        }
    }

    /// How many keys are currently tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.per_principal.len() + self.failed_auth.load().len() + self.penalties.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: &str, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            rate: Rate::parse(rate).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            failed_auth_rate: Rate::parse("1/min").unwrap(),
            failed_auth_burst: NonZeroU32::new(2).unwrap(),
            max_tracked_clients: 1000,
            tiers: Default::default(),
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn burst_then_refused_per_principal() {
        let limits = LocalLimits::new(&config("60/min", 3));
        let alice = Principal::new("alice");
        let bob = Principal::new("bob");
        for expected_remaining in [2, 1, 0] {
            let d = limits.check_principal(&alice);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let refused = limits.check_principal(&alice);
        assert!(!refused.allowed);
        assert!(refused.retry_after.unwrap() > Duration::from_millis(500));
        assert!(limits.check_principal(&bob).allowed);
    }

    #[test]
    fn overrides_have_their_own_budget() {
        let limits = LocalLimits::new(&config("60/min", 1));
        let mut vip = Principal::new("vip");
        vip.limit = Some((Rate::parse("600/min").unwrap(), NonZeroU32::new(5).unwrap()));
        for _ in 0..5 {
            assert!(limits.check_principal(&vip).allowed);
        }
        assert!(!limits.check_principal(&vip).allowed);
    }

    #[test]
    fn failed_auth_locks_out_the_ip() {
        let limits = LocalLimits::new(&config("60/min", 3));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limits.failed_auth_lockout(ip).is_none());
        assert!(limits.record_failed_auth(ip).allowed);
        assert!(limits.record_failed_auth(ip).allowed);
        assert!(!limits.record_failed_auth(ip).allowed);
        assert!(limits.failed_auth_lockout(ip).is_some());
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(limits.failed_auth_lockout(other).is_none());
    }

    #[test]
    fn a_share_splits_the_budget() {
        let limits = LocalLimits::with_share(&config("60/min", 6), 3);
        let alice = Principal::new("alice");
        assert!(limits.check_principal(&alice).allowed);
        assert!(limits.check_principal(&alice).allowed);
        let refused = limits.check_principal(&alice);
        assert!(!refused.allowed);
        assert_eq!(refused.limit, 2);
        // 60/min split three ways: one request per 3 s.
        assert!(refused.retry_after.unwrap() > Duration::from_secs(2));
    }

    #[test]
    fn state_is_bounded() {
        let mut c = config("60/min", 3);
        c.max_tracked_clients = 50;
        let limits = LocalLimits::new(&c);
        for i in 0..5000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limits.record_failed_auth(ip);
        }
        assert!(limits.failed_auth.load().len() <= 50);
        limits.sweep();
        assert!(limits.tracked() <= 100);
    }
}
