//! Several replicas, one service: sealed session ids and the peer hop.
//!
//! The edge hands out its own `Mcp-Session-Id` (and legacy `sessionId`), sealed with
//! the session key ring ([`seal`]): it names the replica that owns the session, the
//! inner (rmcp or legacy) session id, a digest of the principal and an expiry. Every
//! request carrying an id is opened here first: anything that does not open, has
//! expired or belongs to another principal is `404 session not found`; a session this
//! replica owns continues into rmcp with the inner id; any other is forwarded to the
//! owner's peer listener ([`peer`]) and its answer streamed back. The HTTP step
//! that does this is `server::session`.
//!
//! The session registry and rmcp key sessions by the **inner** id; only the HTTP
//! boundary sees sealed ids.

pub mod peer;
pub mod seal;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use seal::{Claims, KeyRing, RingError};

use crate::auth::Principal;
use crate::config::Config;

/// Sealing keys, this replica's peer address and the peer client.
pub struct Cluster {
    ring: ArcSwap<KeyRing>,
    /// `None`: a single replica (no peer listener); sealed ids carry an empty owner.
    advertise: Option<String>,
    id_ttl: Duration,
    client: Option<peer::PeerClient>,
    /// The other replicas this one has exchanged requests with (the status page's
    /// "replicas seen"), by address.
    peers: std::sync::Mutex<std::collections::BTreeMap<String, PeerSeen>>,
}

/// Another replica as this one saw it: requests forwarded to it (it owned their
/// session) and received from it, and the last failure to reach it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PeerSeen {
    pub forwarded_to: u64,
    pub unreachable: u64,
    pub received_from: u64,
    pub last_seen_unix: u64,
    pub last_error: Option<String>,
    pub last_error_unix: Option<u64>,
}

/// At most this many replicas are remembered (addresses come from sealed ids and
/// authenticated peer requests, so they are few; bounded anyway).
const MAX_PEERS: usize = 64;

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("advertise", &self.advertise)
            .field("keys", &self.ring.load().len())
            .finish()
    }
}

/// The ring from `cluster.key_ring_file`, or a random in-memory key when unset.
pub fn load_ring(config: &Config) -> Result<KeyRing, RingError> {
    match &config.cluster.key_ring_file {
        Some(path) => KeyRing::load_file(path),
        None => Ok(KeyRing::random()),
    }
}

/// What happened with another replica (see [`Cluster::saw_peer`]).
#[derive(Debug, Clone, Copy)]
pub enum PeerEvent<'a> {
    Forwarded,
    Received,
    Unreachable(&'a str),
}

/// Truncated SHA-256 of the principal's name: what a sealed id binds its session to.
/// The name alone, as the session registry's ownership check uses: JWT principals
/// are kept apart from key names by `auth.jwt.principal_prefix`, and an empty prefix
/// merges them on purpose.
pub fn principal_digest(principal: &Principal) -> [u8; seal::DIGEST_LEN] {
    Sha256::digest(principal.name.as_bytes())[..seal::DIGEST_LEN]
        .try_into()
        .expect("16 bytes")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cluster {
    pub fn new(ring: KeyRing, advertise: Option<String>, id_ttl: Duration) -> Arc<Cluster> {
        let client = advertise.as_ref().map(|_| peer::PeerClient::new());
        Arc::new(Cluster {
            ring: ArcSwap::from_pointee(ring),
            advertise,
            id_ttl,
            client,
            peers: Default::default(),
        })
    }

    /// A request exchanged with another replica (at `address`: the owner's
    /// advertised address, or the IP a peer request came from). Only on the hop
    /// between replicas, which already costs a round trip; no allocation once known.
    pub fn saw_peer(&self, address: &str, outcome: PeerEvent<'_>) {
        let mut peers = crate::sync::lock(&self.peers);
        if !peers.contains_key(address) {
            if peers.len() >= MAX_PEERS {
                return;
            }
            peers.insert(address.to_owned(), PeerSeen::default());
        }
        let Some(seen) = peers.get_mut(address) else {
            return;
        };
        match outcome {
            PeerEvent::Forwarded => {
                seen.forwarded_to += 1;
                seen.last_seen_unix = now();
            }
            PeerEvent::Received => {
                seen.received_from += 1;
                seen.last_seen_unix = now();
            }
            PeerEvent::Unreachable(error) => {
                seen.unreachable += 1;
                seen.last_error = Some(error.to_owned());
                seen.last_error_unix = Some(now());
            }
        }
    }

    /// The other replicas seen so far, by address.
    pub fn peers_seen(&self) -> Vec<(String, PeerSeen)> {
        crate::sync::lock(&self.peers)
            .iter()
            .map(|(a, s)| (a.clone(), s.clone()))
            .collect()
    }

    pub fn ring(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.ring.load()
    }

    /// Publish a new, already validated ring.
    pub fn replace_ring(&self, ring: KeyRing) {
        self.ring.store(Arc::new(ring));
    }

    pub fn advertise(&self) -> Option<&str> {
        self.advertise.as_deref()
    }

    pub fn seal(&self, inner: &str, principal: &Principal) -> String {
        self.ring.load().seal(&Claims {
            owner: self.advertise.clone().unwrap_or_default(),
            inner: inner.to_owned(),
            principal: principal_digest(principal),
            expires: now().saturating_add(self.id_ttl.as_secs()),
        })
    }

    /// The claims of a sealed id presented by `principal`, or `None` (→ 404) when it is
    /// tampered, sealed by no key in the ring, expired, or another principal's.
    pub fn open(&self, sealed: &str, principal: &Principal) -> Option<Claims> {
        let claims = self.ring.load().open(sealed)?;
        let digest = principal_digest(principal);
        if !bool::from(claims.principal.ct_eq(&digest)) || claims.expires <= now() {
            return None;
        }
        Some(claims)
    }

    /// The client for the hop to other replicas (`None` for a single replica).
    pub fn peer_client(&self) -> Option<&peer::PeerClient> {
        self.client.as_ref()
    }

    /// Is this replica the owner the claims name?
    pub fn is_local(&self, claims: &Claims) -> bool {
        claims.owner == self.advertise.as_deref().unwrap_or_default()
    }
}

/// Sealing of the `requestState` of backend questions (`mcp::backends::request_state`).
impl crate::mcp::backends::request_state::Sealer for Cluster {
    fn seal_for(&self, purpose: &[u8], plain: &[u8]) -> String {
        self.ring.load().seal_for(purpose, plain)
    }

    fn open_for(&self, purpose: &[u8], sealed: &str, max_len: usize) -> Option<Vec<u8>> {
        self.ring.load().open_for(purpose, sealed, max_len)
    }

    fn owner(&self) -> String {
        self.advertise.clone().unwrap_or_default()
    }
}

/// The session-id key ring file: reloaded whole, the last good ring kept when the
/// new one is bad.
pub struct RingFile {
    pub path: std::path::PathBuf,
    pub cluster: Arc<Cluster>,
}

#[async_trait::async_trait]
impl crate::reload::Reload for RingFile {
    fn kind(&self) -> &'static str {
        "session_keys"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Files(vec![self.path.clone()])
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        let ring = KeyRing::load_file(&self.path).map_err(crate::reload::ReloadError::new)?;
        let n = ring.len();
        self.cluster.replace_ring(ring);
        Ok(format!("{n} session key(s) in force"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_bind_principal_owner_and_expiry() {
        let one = Cluster::new(KeyRing::random(), None, Duration::from_secs(60));
        let alice = Principal::new("alice");
        let sealed = one.seal("inner-1", &alice);
        let claims = one.open(&sealed, &alice).unwrap();
        assert_eq!(claims.inner, "inner-1");
        assert!(one.is_local(&claims));
        assert!(one.open(&sealed, &Principal::new("bob")).is_none());
        // A JWT principal is `jwt:alice` (auth.jwt.principal_prefix): another principal.
        assert!(one.open(&sealed, &Principal::new("jwt:alice")).is_none());
        let expired = Cluster::new(KeyRing::random(), None, Duration::ZERO);
        assert!(expired.open(&expired.seal("x", &alice), &alice).is_none());
    }

    #[test]
    fn request_states_are_sealed_by_the_ring_for_their_own_purpose() {
        use crate::mcp::backends::request_state::{self, PREFIX, Refusal, StateClaims};
        let owner = "10.0.0.7:8444";
        let one = Cluster::new(
            KeyRing::random(),
            Some(owner.into()),
            Duration::from_secs(60),
        );
        let claims = StateClaims {
            id: 7,
            principal: "alice".into(),
            binding: request_state::binding("tools/call", 0, "ask"),
            owner: owner.into(),
            expires: 2_000,
        };
        let state = request_state::seal(&*one, &claims);
        assert_eq!(
            request_state::open(&*one, &state, "alice", 1_000),
            Ok(claims.clone())
        );
        assert_eq!(
            request_state::open(&*one, &state, "bob", 1_000),
            Err(Refusal::Foreign)
        );
        // Every character changed in turn: nothing opens.
        for i in PREFIX.len()..state.len() {
            let mut bytes = state.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != state {
                assert_eq!(
                    request_state::open(&*one, &tampered, "alice", 1_000),
                    Err(Refusal::Invalid),
                    "position {i}"
                );
            }
        }
        // Neither a session id nor another ring's state opens as one, nor the reverse.
        let alice = Principal::new("alice");
        assert!(one.open(&state[PREFIX.len()..], &alice).is_none());
        let sid = one.seal("inner", &alice);
        assert_eq!(
            request_state::open(&*one, &format!("{PREFIX}{sid}"), "alice", 0),
            Err(Refusal::Invalid)
        );
        let other = Cluster::new(KeyRing::random(), None, Duration::from_secs(60));
        assert_eq!(
            request_state::open(&*other, &state, "alice", 0),
            Err(Refusal::Invalid)
        );
    }
}
