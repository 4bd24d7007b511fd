//! Per-client rate limits.
//!
//! Two budgets per principal: **calls** (requests that do work: `tools/call`,
//! `resources/read`, `prompts/get`, `*/list`, `completion/complete`, ...) are counted
//! against the principal's rate and burst (per-key overrides and tiers included);
//! **protocol** traffic (session set-up, notifications, GET streams, DELETE, `ping`,
//! responses) has its own, generous bound, so starting a client does not use up the
//! budget its user means for calls. Failed authentications are limited per client IP.
//!
//! With `rate_limit.store = "redis"` the call budget and the failed-auth lockout are
//! global across replicas ([`redis::RedisStore`]), and so is the protocol bound (the
//! same script also refuses a locked-out IP, so a guessed key cannot be confirmed on
//! another replica with an `initialize`); refusals are cached here until their
//! retry-after, so a principal that is already blocked costs no round trip.

mod local;
pub mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use local::{LocalLimits, share};

use crate::auth::Principal;
use crate::config::{RateLimitConfig, RateLimitStore, RedisUnavailable};
use crate::sync::lock;
use redis::RedisStore;

/// The outcome of one check, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the full burst is available again (allowed) or the next request may pass.
    pub reset: Duration,
    /// Set when refused: how long to wait.
    pub retry_after: Option<Duration>,
    /// The policy window, for `RateLimit-Policy`.
    pub window: Duration,
}

/// Which budget a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Call,
    Protocol,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Call => "call",
            Class::Protocol => "protocol",
        }
    }
}

/// The shared store is unreachable and `rate_limit.redis_unavailable = "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    pub retry_after: Duration,
}

/// (budget, principal) → refused until, and the refusal.
type Refusals = HashMap<(Class, Arc<str>), (Instant, Decision)>;

/// Tokens granted by Redis ahead of use, for one (budget, principal, client IP).
struct Lease {
    left: u32,
    until: Instant,
    decision: Decision,
}

type Leases = HashMap<(Class, Arc<str>, IpAddr), Lease>;

/// A lease is used within this long or dropped (its tokens are then simply spent:
/// a lease can make a principal wait sooner, never let it exceed its budget).
const LEASE_TTL: Duration = Duration::from_secs(1);
/// The most tokens one decision takes.
const MAX_LEASE: u32 = 8;

/// Tokens to ask Redis for per decision: one (exact) for small budgets; for large ones
/// a few, so that all replicas' unused leases together hold at most a quarter of the
/// burst. A budget of 4 stays exact; the default 30 over 3 replicas takes 2.
fn lease_size(burst: NonZeroU32, replicas: NonZeroU32) -> u32 {
    (burst.get() / (4 * replicas.get())).clamp(1, MAX_LEASE)
}

struct Shared {
    redis: Arc<RedisStore>,
    /// This replica's share of the budgets, used while Redis is unreachable.
    fallback: LocalLimits,
    protocol_fallback: LocalLimits,
    on_unavailable: RedisUnavailable,
    /// Principals refused by Redis, until their retry-after.
    refusals: Mutex<Refusals>,
    leases: Mutex<Leases>,
}

/// The protocol bound as a budget of its own.
fn protocol_config(config: &RateLimitConfig) -> RateLimitConfig {
    RateLimitConfig {
        rate: config.protocol_rate,
        burst: config.protocol_burst,
        ..config.clone()
    }
}

pub struct RateLimits {
    config: RateLimitConfig,
    local: LocalLimits,
    protocol: LocalLimits,
    shared: Option<Shared>,
}

impl RateLimits {
    /// In-process limits only.
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            config: config.clone(),
            local: LocalLimits::new(config),
            protocol: LocalLimits::new(&protocol_config(config)),
            shared: None,
        }
    }

    /// Limits counted in Redis when the config says `store = "redis"`.
    pub fn with_store(config: &RateLimitConfig, redis: Option<Arc<RedisStore>>) -> RateLimits {
        let mut limits = Self::new(config);
        if config.store == RateLimitStore::Redis
            && let Some(redis) = redis
        {
            limits.shared = Some(Shared {
                redis,
                fallback: LocalLimits::with_share(config, config.replicas.get()),
                protocol_fallback: LocalLimits::with_share(
                    &protocol_config(config),
                    config.replicas.get(),
                ),
                on_unavailable: config.redis_unavailable,
                refusals: Mutex::new(HashMap::new()),
                leases: Mutex::new(HashMap::new()),
            });
        }
        limits
    }

    /// Count one request by an authenticated principal from `ip`.
    pub async fn check_principal(
        &self,
        principal: &Principal,
        ip: IpAddr,
        class: Class,
    ) -> Result<Decision, Unavailable> {
        let local = match class {
            Class::Call => &self.local,
            Class::Protocol => &self.protocol,
        };
        // Overrides and tiers size the call budget; the protocol bound is uniform.
        let (rate, burst) = match class {
            Class::Call => principal
                .limit
                .unwrap_or((self.config.rate, self.config.burst)),
            Class::Protocol => (self.config.protocol_rate, self.config.protocol_burst),
        };
        let check_local = |limits: &LocalLimits| match class {
            Class::Call => limits.check_principal(principal),
            Class::Protocol => limits.check_uniform(&principal.name),
        };
        let Some(shared) = &self.shared else {
            return Ok(check_local(local));
        };
        if let Some(refused) = shared.cached_refusal(class, &principal.name) {
            return Ok(refused);
        }
        if let Some(leased) = shared.take_leased(class, &principal.name, ip) {
            return Ok(leased);
        }
        let want = lease_size(burst, self.config.replicas);
        let reply = shared
            .redis
            .check_principal(class.label(), &principal.name, (rate, burst), ip, want)
            .await;
        match reply {
            Ok(gcra) if gcra.locked => {
                self.lock_out(ip, gcra.wait);
                Ok(self.lockout_decision(gcra.wait))
            }
            Ok(gcra) => {
                let window = rate
                    .per
                    .mul_f64(f64::from(burst.get()) / f64::from(rate.count.get()));
                let decision = Decision {
                    allowed: gcra.allowed,
                    limit: burst.get(),
                    remaining: gcra.remaining.min(burst.get()),
                    reset: gcra.wait,
                    retry_after: (!gcra.allowed).then_some(gcra.wait),
                    window,
                };
                if gcra.granted > 1 {
                    shared.store_lease(
                        (class, principal.name.clone(), ip),
                        gcra.granted - 1,
                        decision,
                        self.config.max_tracked_clients,
                    );
                }
                if !decision.allowed {
                    shared.cache_refusal(
                        class,
                        &principal.name,
                        decision,
                        self.config.max_tracked_clients,
                    );
                }
                Ok(decision)
            }
            Err(_) => match shared.on_unavailable {
                RedisUnavailable::Local => {
                    crate::metrics::redis_fallback_decision(class.label());
                    let fallback = match class {
                        Class::Call => &shared.fallback,
                        Class::Protocol => &shared.protocol_fallback,
                    };
                    Ok(check_local(fallback))
                }
                RedisUnavailable::Deny => Err(Unavailable {
                    retry_after: Duration::from_secs(1),
                }),
            },
        }
    }

    fn lock_out(&self, ip: IpAddr, wait: Duration) {
        self.local.lock_out(ip, wait);
    }

    fn lockout_decision(&self, wait: Duration) -> Decision {
        let (rate, burst) = self.local.failed_auth_budget();
        Decision {
            allowed: false,
            limit: burst.get(),
            remaining: 0,
            reset: wait,
            retry_after: Some(wait),
            window: rate.per,
        }
    }

    /// Before checking credentials: is this IP locked out for failing auth too often?
    /// Answered from this process only (no round trip); with Redis, a lockout decided
    /// on another replica is applied by [`Self::check_principal`] and by
    /// [`Self::record_failed_auth`], and cached here from then on.
    pub fn failed_auth_lockout(&self, ip: IpAddr) -> Option<Decision> {
        self.local.failed_auth_lockout(ip)
    }

    /// Count one failed authentication from `ip`; refused when over the limit. While
    /// Redis is unreachable this replica's share applies, whatever
    /// `redis_unavailable` says (a throttle on guessing must not turn off).
    pub async fn record_failed_auth(&self, ip: IpAddr) -> Decision {
        let Some(shared) = &self.shared else {
            return self.local.record_failed_auth(ip);
        };
        let (rate, burst) = (self.config.failed_auth_rate, self.config.failed_auth_burst);
        match shared.redis.record_failed_auth(ip, rate, burst).await {
            Ok(gcra) if gcra.allowed => Decision {
                allowed: true,
                limit: burst.get(),
                remaining: gcra.remaining.min(burst.get()),
                reset: gcra.wait,
                retry_after: None,
                window: rate.per,
            },
            Ok(gcra) => {
                self.lock_out(ip, gcra.wait);
                self.lockout_decision(gcra.wait)
            }
            Err(_) => {
                crate::metrics::redis_fallback_decision("failed_auth");
                let decision = shared.fallback.record_failed_auth(ip);
                if let Some(wait) = decision.retry_after {
                    self.lock_out(ip, wait);
                }
                decision
            }
        }
    }

    /// Sweep (see [`RateLimits::sweep`]) every 30 s in the background; abort the
    /// task to stop.
    pub fn spawn_sweeps(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let limits = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                limits.sweep();
            }
        })
    }

    /// Drop state that is indistinguishable from a fresh key, bounding memory.
    pub fn sweep(&self) {
        self.local.sweep();
        self.protocol.sweep();
        if let Some(shared) = &self.shared {
            shared.fallback.sweep();
            shared.protocol_fallback.sweep();
            let now = Instant::now();
            lock(&shared.refusals).retain(|_, (until, _)| *until > now);
        }
    }

    /// How many keys are currently tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.local.tracked() + self.protocol.tracked()
    }
}

impl Shared {
    fn cached_refusal(&self, class: Class, principal: &Arc<str>) -> Option<Decision> {
        let refusals = lock(&self.refusals);
        let (until, decision) = refusals.get(&(class, principal.clone()))?;
        let now = Instant::now();
        (*until > now).then(|| {
            let wait = *until - now;
            Decision {
                reset: wait,
                retry_after: Some(wait),
                ..*decision
            }
        })
    }

    /// One token of a live lease, if any: no round trip.
    fn take_leased(&self, class: Class, principal: &Arc<str>, ip: IpAddr) -> Option<Decision> {
        let mut leases = lock(&self.leases);
        let key = (class, principal.clone(), ip);
        let lease = leases.get_mut(&key)?;
        if lease.until <= Instant::now() {
            leases.remove(&key);
            return None;
        }
        lease.left -= 1;
        let decision = Decision {
            remaining: lease.decision.remaining + lease.left,
            ..lease.decision
        };
        if lease.left == 0 {
            leases.remove(&key);
        }
        Some(decision)
    }

    fn store_lease(
        &self,
        key: (Class, Arc<str>, IpAddr),
        left: u32,
        decision: Decision,
        max: usize,
    ) {
        let mut leases = lock(&self.leases);
        let now = Instant::now();
        if leases.len() >= max {
            leases.retain(|_, l| l.until > now);
        }
        let until = now + LEASE_TTL;
        if let Some(lease) = leases.get_mut(&key).filter(|l| l.until > now) {
            // Concurrent calls that all missed add up: every token was charged.
            lease.left += left;
            lease.until = until;
            lease.decision = decision;
        } else if leases.len() < max {
            leases.insert(
                key,
                Lease {
                    left,
                    until,
                    decision,
                },
            );
        }
    }

    fn cache_refusal(&self, class: Class, principal: &Arc<str>, decision: Decision, max: usize) {
        let Some(wait) = decision.retry_after else {
            return;
        };
        let mut refusals = lock(&self.refusals);
        let now = Instant::now();
        if refusals.len() >= max {
            refusals.retain(|_, (until, _)| *until > now);
        }
        if refusals.len() < max {
            refusals.insert((class, principal.clone()), (now + wait, decision));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use std::num::NonZeroU32;

    #[test]
    fn small_budgets_are_decided_one_call_at_a_time() {
        let n = |v| NonZeroU32::new(v).unwrap();
        assert_eq!(lease_size(n(4), n(3)), 1);
        assert_eq!(lease_size(n(30), n(3)), 2);
        assert_eq!(lease_size(n(30), n(1)), 7);
        assert_eq!(lease_size(n(1_000_000), n(3)), MAX_LEASE);
        assert_eq!(lease_size(n(1), n(10)), 1);
    }

    #[tokio::test]
    async fn protocol_traffic_has_its_own_bound() {
        let config = RateLimitConfig {
            rate: Rate::parse("60/min").unwrap(),
            burst: NonZeroU32::new(2).unwrap(),
            protocol_burst: NonZeroU32::new(5).unwrap(),
            ..RateLimitConfig::default()
        };
        let limits = RateLimits::new(&config);
        let alice = Principal::new("alice");
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..5 {
            let d = limits.check_principal(&alice, ip, Class::Protocol).await;
            assert!(d.unwrap().allowed);
        }
        let d = limits.check_principal(&alice, ip, Class::Protocol).await;
        assert!(!d.unwrap().allowed);
        for _ in 0..2 {
            let d = limits.check_principal(&alice, ip, Class::Call).await;
            assert!(d.unwrap().allowed);
        }
        let d = limits.check_principal(&alice, ip, Class::Call).await;
        assert!(!d.unwrap().allowed);
    }
}
