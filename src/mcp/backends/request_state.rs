//! The `requestState` the edge hands a stateless (2026-07-28) client when a backend
//! asked it something: a handle to the question the edge keeps pending, sealed
//! (AEAD, the cluster key ring, a purpose of its own) and bound to the principal, the
//! request it answers, the replica holding it and an expiry. The client must treat it
//! as opaque; the edge treats what comes back as attacker-controlled (SEP-2322).
//!
//! The sealing itself is the cluster's ([`Sealer`], implemented by
//! `cluster::Cluster`), so this module needs no key material of its own.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Marks a `requestState` as the edge's own: one without it is the upstream's and is
/// passed through untouched (an upstream may run its own multi-round-trip requests).
pub const PREFIX: &str = "mcp-edge.q1.";
/// Associated data of the seal, so no other sealed value opens as a request state.
const PURPOSE: &[u8] = b"mcp-edge requestState v1";
/// Longest state accepted, so a huge value costs no decoding work.
pub const MAX_LEN: usize = 2048;
/// Digest bytes kept of the request a state answers.
const BINDING_LEN: usize = 16;

/// Seals and opens values for one purpose with the cluster key ring.
pub trait Sealer: Send + Sync + 'static {
    fn seal_for(&self, purpose: &[u8], plain: &[u8]) -> String;
    fn open_for(&self, purpose: &[u8], sealed: &str, max_len: usize) -> Option<Vec<u8>>;
    /// This replica's peer address; empty for a single replica.
    fn owner(&self) -> String;
}

/// What a sealed state says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateClaims {
    /// The pending entry (random, so a state from before a restart names nothing).
    #[serde(rename = "i")]
    pub id: u128,
    /// The principal whose call it is.
    #[serde(rename = "p")]
    pub principal: String,
    /// Digest of the request it answers ([`binding`]).
    #[serde(rename = "b")]
    pub binding: [u8; BINDING_LEN],
    /// The replica holding the pending entry (its peer address; empty: single replica).
    #[serde(rename = "o")]
    pub owner: String,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires: u64,
}

/// Why a presented `requestState` was refused. The client always sees the same error
/// (the spec's: invalid params, "Invalid or expired requestState"); the reason goes to
/// the log and the metrics only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not sealed by the ring (tampered, a removed key, garbage, too long).
    Invalid,
    /// Sealed for another principal.
    Foreign,
    Expired,
    /// Sealed for another request (method, backend or name).
    Mismatch,
    /// Already answered (replayed), or dropped (expired, the edge restarted).
    Used,
    /// Held by another replica that could not be reached.
    Elsewhere,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Foreign => "foreign_principal",
            Refusal::Expired => "expired",
            Refusal::Mismatch => "other_request",
            Refusal::Used => "used",
            Refusal::Elsewhere => "owner_unreachable",
        }
    }
}

/// Is `state` (as a client sent it) one of the edge's own?
pub fn is_edge_state(state: &str) -> bool {
    state.starts_with(PREFIX)
}

/// Digest of what a state answers: the method, the member and the name or URI the
/// backend sees. A state presented on any other request is refused.
pub fn binding(method: &str, member: usize, target: &str) -> [u8; BINDING_LEN] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), &member.to_be_bytes(), target.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize()[..BINDING_LEN].try_into().expect("16 bytes")
}

pub fn seal(sealer: &dyn Sealer, claims: &StateClaims) -> String {
    let plain = serde_json::to_vec(claims).expect("claims serialize");
    format!("{PREFIX}{}", sealer.seal_for(PURPOSE, &plain))
}

/// The claims of `state` as presented by `principal` at `now` (Unix seconds).
pub fn open(
    sealer: &dyn Sealer,
    state: &str,
    principal: &str,
    now: u64,
) -> Result<StateClaims, Refusal> {
    let sealed = state.strip_prefix(PREFIX).ok_or(Refusal::Invalid)?;
    let plain = sealer
        .open_for(PURPOSE, sealed, MAX_LEN)
        .ok_or(Refusal::Invalid)?;
    let claims: StateClaims = serde_json::from_slice(&plain).map_err(|_| Refusal::Invalid)?;
    // Names are not secret; the seal already makes the claims authentic.
    if claims.principal != principal {
        return Err(Refusal::Foreign);
    }
    if claims.expires <= now {
        return Err(Refusal::Expired);
    }
    Ok(claims)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A stand-in for the cluster's ring: XOR "sealing" with a tag, enough to test the
    /// claims' checks (the real AEAD is tested in `cluster` with this module's claims).
    pub struct ToySealer(pub u8, pub String);

    impl Sealer for ToySealer {
        fn seal_for(&self, purpose: &[u8], plain: &[u8]) -> String {
            let mut out = vec![self.0, purpose.len() as u8];
            out.extend(plain.iter().map(|b| b ^ self.0));
            hex::encode(out)
        }
        fn open_for(&self, purpose: &[u8], sealed: &str, max_len: usize) -> Option<Vec<u8>> {
            if sealed.len() > max_len {
                return None;
            }
            let raw = hex::decode(sealed).ok()?;
            (raw.first() == Some(&self.0) && raw.get(1) == Some(&(purpose.len() as u8)))
                .then(|| raw[2..].iter().map(|b| b ^ self.0).collect())
        }
        fn owner(&self) -> String {
            self.1.clone()
        }
    }

    fn claims() -> StateClaims {
        StateClaims {
            id: 0x1234_5678_9abc_def0_1234_5678_9abc_def0,
            principal: "alice".into(),
            binding: binding("tools/call", 0, "ask"),
            owner: "10.0.0.7:8444".into(),
            expires: 2_000,
        }
    }

    #[test]
    fn a_state_opens_for_its_principal_until_it_expires() {
        let s = ToySealer(7, String::new());
        let state = seal(&s, &claims());
        assert!(is_edge_state(&state));
        assert_eq!(open(&s, &state, "alice", 1_999), Ok(claims()));
        assert_eq!(open(&s, &state, "bob", 1_999), Err(Refusal::Foreign));
        assert_eq!(open(&s, &state, "alice", 2_000), Err(Refusal::Expired));
        assert_eq!(
            open(&ToySealer(8, String::new()), &state, "alice", 0),
            Err(Refusal::Invalid)
        );
        let unprefixed = state.trim_start_matches(PREFIX);
        assert_eq!(open(&s, unprefixed, "alice", 0), Err(Refusal::Invalid));
        assert_eq!(
            open(&s, &format!("{PREFIX}{}", "a".repeat(5000)), "alice", 0),
            Err(Refusal::Invalid)
        );
        assert!(!is_edge_state("an-upstream's-own-state"));
    }

    #[test]
    fn the_binding_tells_requests_apart() {
        let b = binding("tools/call", 0, "ask");
        assert_ne!(b, binding("prompts/get", 0, "ask"));
        assert_ne!(b, binding("tools/call", 1, "ask"));
        assert_ne!(b, binding("tools/call", 0, "ask2"));
        // Length-prefixed: moving a byte between parts changes the digest.
        assert_ne!(binding("a", 0, "bc"), binding("ab", 0, "c"));
    }
}
