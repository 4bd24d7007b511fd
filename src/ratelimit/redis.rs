//! Shared limiter state in Redis, for several replicas behaving as one server.
//!
//! Each decision is one Lua script (EVALSHA, falling back to EVAL once per
//! connection) that reads the Redis server's clock, so replicas with skewed clocks
//! agree. Every key carries a TTL just past the moment it would be indistinguishable
//! from a fresh key, so Redis memory stays bounded by the active principals and IPs.
//!
//! While Redis cannot be reached the store says so at once instead of waiting out a
//! timeout per request: after a failure it is only probed again after a backoff
//! (100 ms doubling to 5 s), by one request at a time.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::config::{Rate, RedisConfig};
use crate::sync::lock;

const PREFIX: &str = "mcp-edge";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most one "Redis unreachable" log line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// GCRA for calls by a principal; refused at once while the caller's IP is locked
/// out for failed authentication (`KEYS[2]`, optional).
/// ARGV: emission interval (µs), burst, tokens wanted (1, or a small lease).
/// Grants up to the wanted tokens that conform now (at least one, or refuses).
/// Returns {granted, remaining, µs, ip_locked}: µs is the time until the full burst is
/// back (granted) or the wait (refused).
const PRINCIPAL_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if KEYS[2] then
  local locked = tonumber(redis.call('GET', KEYS[2]) or '0')
  if locked > now then return {0, 0, locked - now, 1} end
end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local available = math.floor((now - tat) / interval) + burst
if available < 1 then return {0, 0, tat + interval - interval * burst - now, 0} end
local granted = math.min(want, available)
local new_tat = tat + interval * granted
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, math.floor((now - (new_tat - interval * burst)) / interval), new_tat - now, 0}
";

/// GCRA for one failed authentication from an IP (`KEYS[1]`); when refused, the IP
/// is locked out (`KEYS[2]`) until its next failure would conform.
const FAILED_AUTH_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat + interval - interval * burst
if now < allow_at then
  local wait = allow_at - now
  redis.call('SET', KEYS[2], string.format('%d', now + wait), 'PX', math.ceil(wait / 1000) + 1)
  return {0, 0, wait, 1}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - (new_tat - interval * burst)) / interval), new_tat - now, 0}
";

/// A principal's sessions: a sorted set of ids scored by expiry (µs). Expired ids are
/// swept, then ARGV[1] is added scored now + ARGV[2] if fewer than ARGV[3] remain.
const SESSION_ADMIT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000))
return 1
";

/// Replace ARGV[1] (a pending placeholder, or '') by ARGV[2], scored now + ARGV[3].
/// Also the refresh on use: a swept-but-alive session is counted again.
const SESSION_PUT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[3])), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) / 1000))
return 1
";

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("redis.password_file {path}: {source}")]
    PasswordFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("redis.password_file {0}: the file is empty")]
    EmptyPassword(std::path::PathBuf),
    #[error("redis.ca_file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("redis.url: {0}")]
    Client(String),
}

/// Redis did not answer in time or answered with an error (already logged, counted).
#[derive(Debug, Clone, Copy)]
pub struct Unreachable;

/// One GCRA outcome from Redis.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    pub allowed: bool,
    /// Tokens granted (1 for a single request; up to the lease asked for).
    pub granted: u32,
    pub remaining: u32,
    /// Until the full burst is back (allowed), or how long to wait (refused).
    pub wait: Duration,
    /// Refused because the caller's IP is locked out for failed authentication.
    pub locked: bool,
}

struct Health {
    up: bool,
    probing: bool,
    retry_at: Instant,
    backoff: Duration,
    last_log: Option<Instant>,
}

pub struct RedisStore {
    conn: ConnectionManager,
    timeout: Duration,
    health: Mutex<Health>,
    principal: redis::Script,
    failed_auth: redis::Script,
    session_admit: redis::Script,
    session_put: redis::Script,
    family_judge: redis::Script,
    family_revoke: redis::Script,
}

/// Read the password file; a trailing newline (as `echo` writes) is not part of it.
pub fn read_password(path: &Path) -> Result<secrecy::SecretString, RedisSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| RedisSetupError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(RedisSetupError::EmptyPassword(path.to_owned()));
    }
    Ok(password.to_owned().into())
}

/// What `check-config` verifies without connecting: the URL, the password file and
/// the CA bundle can be used to build a client.
pub fn check(config: &RedisConfig) -> Result<(), RedisSetupError> {
    client(config).map(drop)
}

fn client(config: &RedisConfig) -> Result<redis::Client, RedisSetupError> {
    use redis::IntoConnectionInfo;
    use secrecy::ExposeSecret;
    let bad = |e: redis::RedisError| RedisSetupError::Client(e.to_string());
    let mut info = config.url.as_str().into_connection_info().map_err(bad)?;
    if let Some(path) = &config.password_file {
        let password = read_password(path)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose_secret());
        info = info.set_redis_settings(settings);
    }
    match &config.ca_file {
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|source| RedisSetupError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            redis::Client::build_with_tls(info, certs).map_err(bad)
        }
        None => redis::Client::open(info).map_err(bad),
    }
}

/// A short, fixed-length key part for a client-chosen name (JWT subjects can be long).
fn digest(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Set up the client and its connection manager; connects lazily (a replica
    /// starts while Redis is still coming up and falls back until it answers).
    pub fn connect(config: &RedisConfig) -> Result<Arc<RedisStore>, RedisSetupError> {
        let client = client(config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(MAX_BACKOFF);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| RedisSetupError::Client(e.to_string()))?;
        Ok(Arc::new(RedisStore {
            conn,
            timeout: config.timeout,
            health: Mutex::new(Health {
                up: true,
                probing: false,
                retry_at: Instant::now(),
                backoff: MIN_BACKOFF,
                last_log: None,
            }),
            principal: redis::Script::new(PRINCIPAL_SCRIPT),
            failed_auth: redis::Script::new(FAILED_AUTH_SCRIPT),
            session_admit: redis::Script::new(SESSION_ADMIT_SCRIPT),
            session_put: redis::Script::new(SESSION_PUT_SCRIPT),
            family_judge: redis::Script::new(FAMILY_JUDGE_SCRIPT),
            family_revoke: redis::Script::new(FAMILY_REVOKE_SCRIPT),
        }))
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        lock(&self.health)
    }

    /// May a command be sent now? While down, one probe per backoff period.
    fn gate(&self) -> bool {
        let mut h = self.health();
        if h.up {
            return true;
        }
        if !h.probing && Instant::now() >= h.retry_at {
            h.probing = true;
            return true;
        }
        false
    }

    fn record(&self, op: &'static str, started: Instant, error: Option<String>) {
        crate::metrics::redis_call(op, started.elapsed(), error.is_none());
        let mut h = self.health();
        h.probing = false;
        match error {
            None => {
                if !h.up {
                    tracing::info!("redis reachable again: limits are global again");
                    crate::metrics::set_redis_fallback(false);
                }
                h.up = true;
                h.backoff = MIN_BACKOFF;
            }
            Some(error) => {
                let now = Instant::now();
                if h.up {
                    crate::metrics::set_redis_fallback(true);
                }
                h.up = false;
                h.retry_at = now + h.backoff;
                h.backoff = (h.backoff * 2).min(MAX_BACKOFF);
                if h.last_log
                    .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
                {
                    h.last_log = Some(now);
                    tracing::warn!(op, %error, "redis unreachable: using the configured fallback");
                }
            }
        }
    }

    /// Whether the last command reached Redis.
    pub fn is_up(&self) -> bool {
        self.health().up
    }

    /// Run `query` under the availability gate and the command timeout, and record its
    /// outcome. No lock is held across the await.
    async fn guarded<T>(
        &self,
        op: &'static str,
        query: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, Unreachable> {
        if !self.gate() {
            crate::metrics::redis_skipped(op);
            return Err(Unreachable);
        }
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, query(&mut conn))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(value) => {
                self.record(op, started, None);
                Ok(value)
            }
            Err(error) => {
                self.record(op, started, Some(error));
                Err(Unreachable)
            }
        }
    }

    /// Run one script (see [`Self::guarded`]).
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, Unreachable> {
        self.guarded(op, async |conn| invocation.invoke_async::<T>(conn).await)
            .await
    }

    fn gcra(reply: (i64, i64, i64, i64)) -> Gcra {
        let (allowed, remaining, wait, locked) = reply;
        Gcra {
            allowed: allowed >= 1,
            granted: u32::try_from(allowed.max(0)).unwrap_or(0),
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            wait: Duration::from_micros(u64::try_from(wait.max(0)).unwrap_or(0)),
            locked: locked == 1,
        }
    }

    /// One request by `principal` against its `budget` ("call" or "protocol") of
    /// `rate`/`burst`, refused while `ip` is locked out; `want` > 1 asks for a lease
    /// of that many tokens (granted as far as they conform).
    pub async fn check_principal(
        &self,
        budget: &'static str,
        principal: &str,
        (rate, burst): (Rate, NonZeroU32),
        ip: IpAddr,
        want: u32,
    ) -> Result<Gcra, Unreachable> {
        let mut invocation = self.principal.prepare_invoke();
        invocation
            .key(format!("{PREFIX}:rl:{budget}:{}", digest(principal)))
            .key(format!("{PREFIX}:lock:{ip}"))
            .arg(micros(rate.period()))
            .arg(burst.get())
            .arg(want.max(1));
        self.invoke("principal", invocation).await.map(Self::gcra)
    }

    /// One failed authentication from `ip`.
    pub async fn record_failed_auth(
        &self,
        ip: IpAddr,
        rate: Rate,
        burst: NonZeroU32,
    ) -> Result<Gcra, Unreachable> {
        let mut invocation = self.failed_auth.prepare_invoke();
        invocation
            .key(format!("{PREFIX}:fa:{ip}"))
            .key(format!("{PREFIX}:lock:{ip}"))
            .arg(micros(rate.period()))
            .arg(burst.get());
        self.invoke("failed_auth", invocation).await.map(Self::gcra)
    }

    fn sessions_key(principal: &str) -> String {
        format!("{PREFIX}:sessions:{}", digest(principal))
    }

    /// Count `member` among `principal`'s sessions if it holds fewer than `max`.
    pub async fn admit_session(
        &self,
        principal: &str,
        member: &str,
        ttl: Duration,
        max: usize,
    ) -> Result<bool, Unreachable> {
        let mut invocation = self.session_admit.prepare_invoke();
        invocation
            .key(Self::sessions_key(principal))
            .arg(member)
            .arg(micros(ttl))
            .arg(max);
        self.invoke::<i64>("session_admit", invocation)
            .await
            .map(|n| n == 1)
    }

    /// Record (or refresh) `session`, replacing the placeholder `pending` if given.
    pub async fn put_session(
        &self,
        principal: &str,
        pending: &str,
        session: &str,
        ttl: Duration,
    ) -> Result<(), Unreachable> {
        let mut invocation = self.session_put.prepare_invoke();
        invocation
            .key(Self::sessions_key(principal))
            .arg(pending)
            .arg(session)
            .arg(micros(ttl));
        self.invoke::<i64>("session_put", invocation)
            .await
            .map(drop)
    }

    pub async fn remove_session(&self, principal: &str, session: &str) -> Result<(), Unreachable> {
        if !self.gate() {
            return Err(Unreachable);
        }
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(Self::sessions_key(principal)).arg(session);
        let result = tokio::time::timeout(self.timeout, cmd.query_async::<i64>(&mut conn))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let error = result.err();
        let failed = error.is_some();
        self.record("session_remove", started, error);
        if failed { Err(Unreachable) } else { Ok(()) }
    }

    // ── OAuth grants (`oauth::grants`): state every replica must share ─────────

    /// Run one plain command (see [`Self::guarded`]).
    async fn command<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, Unreachable> {
        self.guarded(op, async |conn| cmd.query_async::<T>(conn).await)
            .await
    }

    /// Mark an authorization code used (for `ttl`); false when it was used before.
    pub async fn use_code(&self, jti: &str, ttl: Duration) -> Result<bool, Unreachable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{PREFIX}:code:{}", digest(jti)))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        self.command::<Option<String>>("oauth_code", cmd)
            .await
            .map(|set| set.is_some())
    }

    fn family_key(fam: &str) -> String {
        format!("{PREFIX}:fam:{}", digest(fam))
    }

    /// Start a refresh family at `generation`, kept for `ttl`.
    pub async fn start_family(
        &self,
        fam: &str,
        generation: u32,
        ttl: Duration,
    ) -> Result<(), Unreachable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(Self::family_key(fam))
            .arg(generation)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        self.command::<String>("oauth_family", cmd).await.map(drop)
    }

    /// Judge a refresh token of `fam` at `generation` (rotating it when `rotate`):
    /// the next generation (or the current one), or -1 unknown, -2 revoked, -3 reused
    /// (the family is revoked by that).
    pub async fn judge_family(
        &self,
        fam: &str,
        generation: u32,
        rotate: bool,
    ) -> Result<i64, Unreachable> {
        let mut invocation = self.family_judge.prepare_invoke();
        invocation
            .key(Self::family_key(fam))
            .arg(generation)
            .arg(u8::from(rotate));
        self.invoke("oauth_family", invocation).await
    }

    /// Revoke `fam` (its refresh tokens, kept for `ttl`) and publish it for every
    /// replica's access-token check until `until` (unix seconds).
    pub async fn revoke_family(
        &self,
        fam: &str,
        ttl: Duration,
        until: u64,
    ) -> Result<(), Unreachable> {
        let mut invocation = self.family_revoke.prepare_invoke();
        invocation
            .key(Self::family_key(fam))
            .key(format!("{PREFIX}:revoked"))
            .arg(micros(ttl) / 1000)
            .arg(until)
            .arg(fam);
        self.invoke::<i64>("oauth_revoke", invocation)
            .await
            .map(drop)
    }

    /// Families revoked (by any replica) whose access tokens may still be alive.
    pub async fn revoked_families(&self, now: u64) -> Result<Vec<(String, u64)>, Unreachable> {
        let key = format!("{PREFIX}:revoked");
        let mut prune = redis::cmd("ZREMRANGEBYSCORE");
        prune.arg(&key).arg("-inf").arg(now);
        self.command::<i64>("oauth_revoked", prune).await?;
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
        let list: Vec<(String, f64)> = self.command("oauth_revoked", cmd).await?;
        Ok(list.into_iter().map(|(f, s)| (f, s as u64)).collect())
    }
}

/// KEYS[1] family; ARGV generation, rotate (0/1). A revoked family is "r".
const FAMILY_JUDGE_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return -1 end
if v == 'r' then return -2 end
local g = tonumber(v)
if g ~= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], 'r', 'KEEPTTL')
  return -3
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], g + 1, 'KEEPTTL')
  return g + 1
end
return g
"#;

/// KEYS[1] family, KEYS[2] revoked set; ARGV ttl (ms), until (unix s), family id.
const FAMILY_REVOKE_SCRIPT: &str = r#"
redis.call('SET', KEYS[1], 'r', 'PX', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"#;
