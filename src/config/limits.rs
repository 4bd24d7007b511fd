//! `[rate_limit]`, `[redis]` and `[sessions]`: per-principal budgets, where they are
//! counted, and how many sessions there may be.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Errors, RawConfig, duration, path_of, positive, ser_duration};

/// A request rate such as `120/min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("expected <count>/<unit> such as 120/min, got {text:?}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate count must be a whole number, got {count:?}"))?;
        let count = NonZeroU32::new(count).ok_or("rate count must be at least 1")?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => {
                return Err(format!("rate unit must be s, min or hour, got {other:?}"));
            }
        };
        Ok(Rate { count, per })
    }

    /// The interval at which one request's worth of capacity comes back.
    pub fn period(&self) -> Duration {
        self.per / self.count.get()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "hour",
        };
        write!(f, "{}/{}", self.count, unit)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitConfig {
    pub rate: Rate,
    pub burst: NonZeroU32,
    pub failed_auth_rate: Rate,
    pub failed_auth_burst: NonZeroU32,
    pub max_tracked_clients: usize,
    /// Named budgets a keys-file line (`tier=`) or a JWT claim can select.
    pub tiers: std::collections::BTreeMap<String, (Rate, NonZeroU32)>,
    /// The separate per-principal bound on protocol traffic (session set-up,
    /// notifications, GET streams, DELETE, ping, responses).
    pub protocol_rate: Rate,
    pub protocol_burst: NonZeroU32,
    pub store: RateLimitStore,
    pub redis_unavailable: RedisUnavailable,
    /// Replicas sharing the budget; each takes `1 / replicas` while Redis is down.
    pub replicas: NonZeroU32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let rate = |t| Rate::parse(t).expect("default rate parses");
        let n = |v| NonZeroU32::new(v).expect("default is not zero");
        RateLimitConfig {
            rate: rate("120/min"),
            burst: n(30),
            failed_auth_rate: rate("20/min"),
            failed_auth_burst: n(10),
            max_tracked_clients: 100_000,
            tiers: Default::default(),
            protocol_rate: rate("1200/min"),
            protocol_burst: n(300),
            store: RateLimitStore::Local,
            redis_unavailable: RedisUnavailable::Local,
            replicas: NonZeroU32::MIN,
        }
    }
}

/// Where the per-principal budgets and the failed-auth lockout are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitStore {
    Local,
    Redis,
}

/// What the limiter does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisUnavailable {
    /// Each replica applies `budget / replicas` on its own.
    Local,
    /// Refuse calls with 503 and `Retry-After`.
    Deny,
}

/// `[redis]`: shared rate-limit and session-cap state for several replicas.
#[derive(Debug, Clone, Serialize)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`; shown with any password masked.
    #[serde(serialize_with = "ser_redacted_url")]
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// A URL with the password of its user-info replaced, for printing.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn ser_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&redacted_url(url))
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionsConfig {
    pub max_total: usize,
    pub max_per_principal: usize,
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Lifetime sealed into each session id the edge hands out.
    #[serde(serialize_with = "ser_duration")]
    pub id_ttl: Duration,
}

pub(super) fn validate_rate_limit(e: &mut Errors<'_>, raw: &RawConfig) -> RateLimitConfig {
    let rl = &raw.rate_limit;
    RateLimitConfig {
        rate: rate(e, "rate_limit.rate", rl.rate.as_deref(), "120/min"),
        burst: nonzero(e, "rate_limit.burst", rl.burst, 30),
        failed_auth_rate: rate(
            e,
            "rate_limit.failed_auth_rate",
            rl.failed_auth_rate.as_deref(),
            "20/min",
        ),
        failed_auth_burst: nonzero(e, "rate_limit.failed_auth_burst", rl.failed_auth_burst, 10),
        max_tracked_clients: positive(
            e,
            "rate_limit.max_tracked_clients",
            rl.max_tracked_clients,
            100_000,
        ),
        tiers: tiers(e, raw),
        protocol_rate: rate(
            e,
            "rate_limit.protocol_rate",
            rl.protocol_rate.as_deref(),
            "1200/min",
        ),
        protocol_burst: nonzero(e, "rate_limit.protocol_burst", rl.protocol_burst, 300),
        store: e
            .choice("rate_limit.store", &rl.store)
            .unwrap_or(RateLimitStore::Local),
        redis_unavailable: e
            .choice("rate_limit.redis_unavailable", &rl.redis_unavailable)
            .unwrap_or(RedisUnavailable::Local),
        replicas: nonzero(e, "rate_limit.replicas", rl.replicas, 1),
    }
}

/// `[rate_limit.tiers]`: a tier's burst defaults to its rate's count.
fn tiers(
    e: &mut Errors<'_>,
    raw: &RawConfig,
) -> std::collections::BTreeMap<String, (Rate, NonZeroU32)> {
    raw.rate_limit
        .tiers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, tier)| match Rate::parse(&tier.rate) {
            Ok(rate) => {
                let burst = tier.burst.unwrap_or(rate.count.get());
                match NonZeroU32::new(burst) {
                    Some(burst) => Some((name, (rate, burst))),
                    None => {
                        e.push(
                            "rate_limit.tiers",
                            format!("tier {name:?}: burst must be at least 1"),
                        );
                        None
                    }
                }
            }
            Err(msg) => {
                e.push("rate_limit.tiers", format!("tier {name:?}: {msg}"));
                None
            }
        })
        .collect()
}

/// `[redis]`, checked without connecting: the URL parses, and TLS options fit it.
pub(super) fn validate_redis(e: &mut Errors<'_>, raw: &RawConfig) -> Option<RedisConfig> {
    let r = &raw.redis;
    let timeout = duration(
        e,
        "redis.timeout",
        r.timeout.as_deref(),
        Duration::from_millis(250),
    );
    let Some(url) = r.url.clone() else {
        for (key, set) in [
            ("redis.password_file", r.password_file.is_some()),
            ("redis.ca_file", r.ca_file.is_some()),
        ] {
            if set {
                e.push(key, "is set but redis.url (MCP_REDIS_URL) is not");
            }
        }
        return None;
    };
    let parsed = url::Url::parse(&url).ok().filter(|u| {
        matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    let Some(parsed) = parsed.filter(|_| redis::Client::open(url.as_str()).is_ok()) else {
        e.push(
            "redis.url",
            format!(
                "{:?} is not a redis:// or rediss:// URL (e.g. rediss://redis.internal:6379/0)",
                redacted_url(&url)
            ),
        );
        return None;
    };
    if parsed.password().is_some() && r.password_file.is_some() {
        e.push(
            "redis.url",
            "holds a password and redis.password_file is set too: keep the password in the file only",
        );
    }
    if r.ca_file.is_some() && parsed.scheme() != "rediss" {
        e.push("redis.ca_file", "is only used with a rediss:// URL");
    }
    Some(RedisConfig {
        url,
        password_file: path_of(&r.password_file),
        ca_file: path_of(&r.ca_file),
        timeout,
    })
}

pub(super) fn validate_sessions(e: &mut Errors<'_>, raw: &RawConfig) -> SessionsConfig {
    let sessions = SessionsConfig {
        max_total: positive(e, "sessions.max_total", raw.sessions.max_total, 1000),
        max_per_principal: positive(
            e,
            "sessions.max_per_principal",
            raw.sessions.max_per_principal,
            50,
        ),
        idle_timeout: duration(
            e,
            "sessions.idle_timeout",
            raw.sessions.idle_timeout.as_deref(),
            Duration::from_secs(300),
        ),
        id_ttl: duration(
            e,
            "sessions.id_ttl",
            raw.sessions.id_ttl.as_deref(),
            Duration::from_secs(24 * 3600),
        ),
    };
    if sessions.id_ttl < Duration::from_secs(1) {
        e.push("sessions.id_ttl", "must be at least 1s");
    }
    sessions
}

fn rate(errors: &mut Errors<'_>, key: &str, value: Option<&str>, default: &str) -> Rate {
    let text = value.unwrap_or(default);
    Rate::parse(text).unwrap_or_else(|e| {
        errors.push(key, e);
        Rate::parse(default).expect("default rate parses")
    })
}

fn nonzero(errors: &mut Errors<'_>, key: &str, value: Option<u32>, default: u32) -> NonZeroU32 {
    let v = value.unwrap_or(default);
    NonZeroU32::new(v).unwrap_or_else(|| {
        errors.push(key, "must be at least 1");
        NonZeroU32::MIN
    })
}
