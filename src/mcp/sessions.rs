//! Which principal owns which MCP session, and how many sessions each may hold.
//!
//! rmcp hands out `Mcp-Session-Id`s but does not know who created them, so without
//! this any valid key could drive another user's session. The edge records the owner
//! when a session is created and refuses (404, as for an unknown session) a request
//! that carries someone else's id.
//!
//! With `redis.url` set the per-principal cap is global: each principal's sessions
//! are also a sorted set in Redis (ids scored by expiry = last use + idle timeout,
//! refreshed on use, expired ones swept by the admission script), so a replica that
//! crashed leaves nothing behind for longer than the idle timeout. The total cap
//! (`sessions.max_total`) stays per replica: it protects this process's memory.
//! Session ids are opaque strings here (they may be sealed ids).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::ratelimit::redis::RedisStore;
use crate::sync::lock;

/// How long a placeholder for an `initialize` in flight counts in Redis at most.
const PENDING_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionLimit {
    #[error("the server holds its maximum number of sessions ({0}); try again later")]
    Total(usize),
    #[error("this principal already holds its maximum number of sessions ({0}); close one first")]
    PerPrincipal(usize),
}

/// Which transport a session belongs to: they close differently, and rmcp's
/// idle sweep knows only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    StreamableHttp,
    /// The HTTP+SSE transport (`server::legacy_sse`).
    LegacySse,
}

impl SessionKind {
    /// The name in logs.
    pub fn name(self) -> &'static str {
        match self {
            SessionKind::StreamableHttp => "streamable_http",
            SessionKind::LegacySse => "legacy_sse",
        }
    }
}

struct Owner {
    principal: Arc<str>,
    kind: SessionKind,
    /// The credential last used on the session; revoking it ends the session.
    credential: Arc<str>,
    /// When the session's expiry in Redis was last pushed forward.
    refreshed: Instant,
}

/// The global per-principal cap's store.
struct SharedCaps {
    redis: Arc<RedisStore>,
    /// A session's lifetime in Redis after its last use (the idle timeout).
    ttl: Duration,
}

impl SharedCaps {
    /// Redis updates that no decision waits for run in the background.
    fn spawn<F>(&self, update: impl FnOnce(Arc<RedisStore>, Duration) -> F, label: &'static str)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(label, "no runtime: session cap update skipped");
            return;
        };
        runtime.spawn(update(self.redis.clone(), self.ttl));
    }
}

#[derive(Default)]
struct State {
    owners: HashMap<String, Owner>,
    per_principal: HashMap<Arc<str>, usize>,
    /// Initialize requests in flight, counted against the caps until they resolve.
    pending: usize,
    pending_per_principal: HashMap<Arc<str>, usize>,
}

pub struct SessionRegistry {
    max_total: usize,
    max_per_principal: usize,
    state: Mutex<State>,
    shared: OnceLock<SharedCaps>,
    /// Sessions removed since [`Self::take_ended`] last read it (any way they ended).
    ended: AtomicUsize,
}

/// Whether a request's session id may be used by its principal.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Owner,
    /// Not a session the edge knows (rmcp answers for it: usually 404).
    Unknown,
    Foreign,
}

impl SessionRegistry {
    pub fn new(max_total: usize, max_per_principal: usize) -> Arc<SessionRegistry> {
        Arc::new(SessionRegistry {
            max_total,
            max_per_principal,
            state: Mutex::new(State::default()),
            shared: OnceLock::new(),
            ended: AtomicUsize::new(0),
        })
    }

    /// Count per-principal caps in Redis from now on (set once, at start).
    pub fn share_caps(&self, redis: Arc<RedisStore>, idle_timeout: Duration) {
        let _ = self.shared.set(SharedCaps {
            redis,
            ttl: idle_timeout,
        });
    }

    /// [`Self::reserve`], then, with Redis, a place among the principal's sessions
    /// across all replicas. If Redis is unreachable the local caps alone apply.
    pub async fn reserve_shared(
        self: &Arc<Self>,
        principal: Arc<str>,
        credential: Arc<str>,
    ) -> Result<Reservation, SessionLimit> {
        let mut reservation = self.reserve(principal, credential)?;
        let Some(shared) = self.shared.get() else {
            return Ok(reservation);
        };
        let pending = format!("pending:{}", uuid::Uuid::new_v4().simple());
        let admitted = shared
            .redis
            .admit_session(
                &reservation.principal,
                &pending,
                PENDING_TTL,
                self.max_per_principal,
            )
            .await;
        match admitted {
            Ok(true) => reservation.pending = Some(pending),
            Ok(false) => return Err(SessionLimit::PerPrincipal(self.max_per_principal)),
            Err(_) => {}
        }
        Ok(reservation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Whether `principal` may use this session and, for its owner, record the
    /// credential it uses now (a client that moved to a new key keeps its session when
    /// the old key is removed). One lock: every request carrying a session id does this.
    pub fn claim(&self, session_id: &str, principal: &str, credential: &Arc<str>) -> Ownership {
        let mut s = self.lock();
        let Some(owner) = s.owners.get_mut(session_id) else {
            return Ownership::Unknown;
        };
        if owner.principal.as_ref() != principal {
            return Ownership::Foreign;
        }
        if owner.credential != *credential {
            owner.credential = credential.clone();
        }
        if let Some(shared) = self.shared.get()
            && owner.refreshed.elapsed() >= shared.ttl / 4
        {
            owner.refreshed = Instant::now();
            let (principal, id) = (owner.principal.clone(), session_id.to_owned());
            drop(s);
            shared.spawn(
                move |redis, ttl| async move {
                    let _ = redis.put_session(&principal, "", &id, ttl).await;
                },
                "touch",
            );
        }
        Ownership::Owner
    }

    /// Sessions whose last credential is one of `credentials`.
    pub fn sessions_using(&self, credentials: &[Arc<str>]) -> Vec<String> {
        self.lock()
            .owners
            .iter()
            .filter(|(_, o)| credentials.contains(&o.credential))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Hold a place for a session about to be created; released on drop unless committed.
    pub fn reserve(
        self: &Arc<Self>,
        principal: Arc<str>,
        credential: Arc<str>,
    ) -> Result<Reservation, SessionLimit> {
        let mut s = self.lock();
        if s.owners.len() + s.pending >= self.max_total {
            return Err(SessionLimit::Total(self.max_total));
        }
        let held = s.per_principal.get(&principal).copied().unwrap_or(0)
            + s.pending_per_principal
                .get(&principal)
                .copied()
                .unwrap_or(0);
        if held >= self.max_per_principal {
            return Err(SessionLimit::PerPrincipal(self.max_per_principal));
        }
        s.pending += 1;
        *s.pending_per_principal
            .entry(principal.clone())
            .or_default() += 1;
        Ok(Reservation {
            registry: self.clone(),
            principal,
            credential,
            pending: None,
            done: false,
        })
    }

    pub fn remove(&self, session_id: &str) {
        let mut s = self.lock();
        if let Some(owner) = s.owners.remove(session_id) {
            decrement(&mut s.per_principal, &owner.principal);
            drop(s);
            self.ended.fetch_add(1, Ordering::Relaxed);
            if let Some(shared) = self.shared.get() {
                let id = session_id.to_owned();
                shared.spawn(
                    move |redis, _| async move {
                        let _ = redis.remove_session(&owner.principal, &id).await;
                    },
                    "remove",
                );
            }
        }
    }

    /// How many sessions were removed (DELETE, idle timeout, revocation, legacy SSE
    /// stream closed) since the last call; the session sweep trims the heap when any were.
    pub fn take_ended(&self) -> usize {
        self.ended.swap(0, Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().owners.len()
    }

    /// Sessions held by each principal (for the status page: one copy of the
    /// per-principal counts under the lock, no walk over the sessions).
    pub fn per_principal(&self) -> Vec<(Arc<str>, usize)> {
        self.lock()
            .per_principal
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of one kind's sessions.
    pub fn session_ids(&self, kind: SessionKind) -> Vec<String> {
        self.lock()
            .owners
            .iter()
            .filter(|(_, owner)| owner.kind == kind)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The kind a session was committed as; `None` once it is gone.
    pub fn kind_of(&self, session_id: &str) -> Option<SessionKind> {
        self.lock().owners.get(session_id).map(|owner| owner.kind)
    }

    /// Sessions of one principal (used to close them when its key is revoked).
    pub fn sessions_of(&self, principal: &str) -> Vec<String> {
        self.lock()
            .owners
            .iter()
            .filter(|(_, owner)| owner.principal.as_ref() == principal)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn decrement(map: &mut HashMap<Arc<str>, usize>, key: &Arc<str>) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

pub struct Reservation {
    registry: Arc<SessionRegistry>,
    principal: Arc<str>,
    credential: Arc<str>,
    /// The placeholder counted in Redis while the session is being created.
    pending: Option<String>,
    done: bool,
}

impl Reservation {
    /// A Streamable HTTP session was created: record its owner.
    pub fn commit(self, session_id: String) {
        self.commit_as(session_id, SessionKind::StreamableHttp);
    }

    /// A session of `kind` was created: record its owner.
    pub fn commit_as(mut self, session_id: String, kind: SessionKind) {
        let mut s = self.registry.lock();
        s.pending -= 1;
        decrement(&mut s.pending_per_principal, &self.principal);
        let owner = Owner {
            principal: self.principal.clone(),
            kind,
            credential: self.credential.clone(),
            refreshed: Instant::now(),
        };
        if s.owners.insert(session_id.clone(), owner).is_none() {
            *s.per_principal.entry(self.principal.clone()).or_default() += 1;
        }
        drop(s);
        self.done = true;
        if let Some(shared) = self.registry.shared.get() {
            // Counted even if admission could not reach Redis, so the global count
            // is right again once Redis is back.
            let pending = self.pending.take().unwrap_or_default();
            let principal = self.principal.clone();
            shared.spawn(
                move |redis, ttl| async move {
                    let _ = redis
                        .put_session(&principal, &pending, &session_id, ttl)
                        .await;
                },
                "commit",
            );
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            let mut s = self.registry.lock();
            s.pending -= 1;
            decrement(&mut s.pending_per_principal, &self.principal);
            drop(s);
            if let (Some(shared), Some(pending)) = (self.registry.shared.get(), self.pending.take())
            {
                let principal = self.principal.clone();
                shared.spawn(
                    move |redis, _| async move {
                        let _ = redis.remove_session(&principal, &pending).await;
                    },
                    "release",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_caps() {
        let reg = SessionRegistry::new(3, 2);
        let alice: Arc<str> = "alice".into();
        let bob: Arc<str> = "bob".into();
        reg.reserve(alice.clone(), "k1".into())
            .unwrap()
            .commit("s1".into());
        let pending = reg.reserve(alice.clone(), "k1".into()).unwrap();
        assert_eq!(
            reg.reserve(alice.clone(), "k1".into()).err(),
            Some(SessionLimit::PerPrincipal(2))
        );
        drop(pending);
        reg.reserve(alice.clone(), "k1".into())
            .unwrap()
            .commit("s2".into());
        reg.reserve(bob.clone(), "k2".into())
            .unwrap()
            .commit("s3".into());
        assert_eq!(
            reg.reserve(bob.clone(), "k2".into()).err(),
            Some(SessionLimit::Total(3))
        );
        let k: Arc<str> = "k1".into();
        assert_eq!(reg.claim("s1", "alice", &k), Ownership::Owner);
        assert_eq!(reg.claim("s1", "bob", &k), Ownership::Foreign);
        assert_eq!(reg.claim("zz", "bob", &k), Ownership::Unknown);
        assert_eq!(reg.take_ended(), 0);
        reg.remove("s1");
        reg.remove("s1");
        reg.remove("zz");
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.take_ended(), 1, "only a session that was there counts");
        assert_eq!(reg.take_ended(), 0);
        assert_eq!(reg.sessions_of("alice"), vec!["s2".to_string()]);
        reg.reserve(bob, "k2".into()).unwrap();
        assert_eq!(reg.sessions_using(&["k1".into()]), vec!["s2".to_string()]);
        // A foreign claim changes nothing; the owner's records its new credential.
        reg.claim("s2", "bob", &"k3".into());
        assert_eq!(reg.sessions_using(&["k1".into()]), vec!["s2".to_string()]);
        reg.claim("s2", "alice", &"k3".into());
        assert!(reg.sessions_using(&["k1".into()]).is_empty());
    }

    #[test]
    fn sessions_keep_the_kind_they_were_committed_as() {
        let reg = SessionRegistry::new(3, 3);
        let alice: Arc<str> = "alice".into();
        reg.reserve(alice.clone(), "k".into())
            .unwrap()
            .commit("s1".into());
        reg.reserve(alice, "k".into())
            .unwrap()
            .commit_as("s2".into(), SessionKind::LegacySse);
        assert_eq!(reg.kind_of("s1"), Some(SessionKind::StreamableHttp));
        assert_eq!(reg.kind_of("s2"), Some(SessionKind::LegacySse));
        assert_eq!(reg.kind_of("s3"), None);
        assert_eq!(reg.session_ids(SessionKind::StreamableHttp), vec!["s1"]);
        assert_eq!(reg.session_ids(SessionKind::LegacySse), vec!["s2"]);
        assert_eq!(SessionKind::LegacySse.name(), "legacy_sse");
    }
}
