//! What the token endpoint trades: authorization codes and refresh tokens, both
//! sealed with the cluster key ring (so any replica sharing the ring reads them),
//! and the little state that sealing cannot carry: which codes were used (single
//! use) and each refresh family's current generation (rotation with reuse
//! detection: a refresh token used twice revokes its whole family).
//!
//! That state lives in this process: a single replica forgets it on restart, so its
//! refresh tokens stop working then (the person signs in again); access tokens stay
//! valid until they expire when the signing key comes from a file.

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::auth::edge_token::now_secs;
use crate::cluster::Cluster;

const SEAL_CODE: &[u8] = b"oauth code v1";
const SEAL_REFRESH: &[u8] = b"oauth refresh v1";
/// How long an authorization code may wait to be exchanged.
pub const CODE_TTL_SECS: u64 = 60;
const MAX_SEALED: usize = 8192;
/// Families and used codes kept before expired ones are swept on insert.
const SWEEP_AT: usize = 10_000;

/// Who signed in, as every grant carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The principal.
    pub sub: String,
    /// How: `key` (a team API key) or `oidc` (the team's IdP).
    pub via: String,
    /// The API key's credential id for a `key` sign-in (no key material), or the IdP
    /// account's for an `oidc` one.
    pub cred: String,
    /// An `oidc` sign-in's groups and tier.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tier: Option<String>,
    /// The IdP's refresh token, to ask the IdP again at each refresh whether the
    /// person is still admitted. Only ever inside sealed values (codes, refresh tokens),
    /// never in an access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_refresh: Option<String>,
}

/// What an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// Unique; becomes the refresh family's id.
    pub jti: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub challenge: String,
    pub person: Person,
    pub scope: String,
    pub resource: String,
    pub exp: u64,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub fam: String,
    pub generation: u32,
    pub client_id: String,
    pub person: Person,
    pub scope: String,
    pub resource: String,
    pub exp: u64,
}

/// A refresh family's state.
#[derive(Debug, Clone, Copy)]
struct Family {
    generation: u32,
    exp: u64,
    revoked: bool,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// Not one of ours, tampered, or past its expiry.
    Invalid,
    /// Its family is not known here (issued before a restart without shared state).
    UnknownFamily,
    Revoked,
    /// An older generation: the token was used before. The family is now revoked.
    Reused,
}

/// A refused refresh token, with what it said when it could be opened.
pub type Refused = (RefreshRefusal, Option<Box<Refresh>>);

pub struct Grants {
    cluster: std::sync::Arc<Cluster>,
    used_codes: DashMap<String, u64>,
    families: DashMap<String, Family>,
}

pub fn random_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Grants {
    pub fn new(cluster: std::sync::Arc<Cluster>) -> Grants {
        Grants {
            cluster,
            used_codes: DashMap::new(),
            families: DashMap::new(),
        }
    }

    pub fn seal_code(&self, code: &Code) -> String {
        let plain = serde_json::to_vec(code).expect("serializable");
        self.cluster.ring().seal_for(SEAL_CODE, &plain)
    }

    /// Open a code (any state): `None` when it is not one of ours or was tampered.
    pub fn open_code(&self, sealed: &str) -> Option<Code> {
        let plain = self
            .cluster
            .ring()
            .open_for(SEAL_CODE, sealed, MAX_SEALED)?;
        serde_json::from_slice(&plain).ok()
    }

    /// Mark `code` used; false when it was used before (a replay).
    pub fn use_code(&self, code: &Code) -> bool {
        let now = now_secs();
        if self.used_codes.len() > SWEEP_AT {
            self.used_codes.retain(|_, exp| *exp > now);
        }
        // Kept past the code's own expiry, so a late replay is still recognised.
        self.used_codes
            .insert(code.jti.clone(), code.exp + CODE_TTL_SECS)
            .is_none()
    }

    /// Start the refresh family of a code just exchanged; its first token.
    pub fn start_family(&self, refresh: &Refresh) -> String {
        let now = now_secs();
        if self.families.len() > SWEEP_AT {
            self.families.retain(|_, f| f.exp > now);
        }
        self.families.insert(
            refresh.fam.clone(),
            Family {
                generation: refresh.generation,
                exp: refresh.exp,
                revoked: false,
            },
        );
        self.seal_refresh(refresh)
    }

    fn seal_refresh(&self, refresh: &Refresh) -> String {
        let plain = serde_json::to_vec(refresh).expect("serializable");
        self.cluster.ring().seal_for(SEAL_REFRESH, &plain)
    }

    /// Open a refresh token without judging it (for revocation).
    pub fn open_refresh(&self, sealed: &str) -> Option<Refresh> {
        let plain = self
            .cluster
            .ring()
            .open_for(SEAL_REFRESH, sealed, MAX_SEALED)?;
        serde_json::from_slice(&plain).ok()
    }

    /// Trade a refresh token for the next one of its family (same expiry: a family
    /// lives as long as its sign-in allowed). A reused token revokes the family.
    pub fn rotate(&self, sealed: &str) -> Result<(Refresh, String), Refused> {
        self.judge(sealed, true)
    }

    /// What [`Grants::rotate`] would say, without rotating (a reused token still
    /// revokes its family). Returns the token's contents.
    pub fn peek(&self, sealed: &str) -> Result<Refresh, Refused> {
        self.judge(sealed, false).map(|(refresh, _)| refresh)
    }

    /// Seal `refresh` again (the same generation, with what a refresh learned anew).
    pub fn reseal(&self, refresh: &Refresh) -> String {
        self.seal_refresh(refresh)
    }

    fn judge(&self, sealed: &str, rotate: bool) -> Result<(Refresh, String), Refused> {
        let refresh = self
            .open_refresh(sealed)
            .ok_or((RefreshRefusal::Invalid, None))?;
        if refresh.exp <= now_secs() {
            return Err((RefreshRefusal::Invalid, Some(Box::new(refresh))));
        }
        let mut family = match self.families.get_mut(&refresh.fam) {
            Some(f) => f,
            None => return Err((RefreshRefusal::UnknownFamily, Some(Box::new(refresh)))),
        };
        if family.revoked {
            return Err((RefreshRefusal::Revoked, Some(Box::new(refresh))));
        }
        if family.generation != refresh.generation {
            family.revoked = true;
            return Err((RefreshRefusal::Reused, Some(Box::new(refresh))));
        }
        if !rotate {
            return Ok((refresh, String::new()));
        }
        family.generation += 1;
        let next = Refresh {
            generation: family.generation,
            ..refresh
        };
        drop(family);
        let sealed = self.seal_refresh(&next);
        Ok((next, sealed))
    }

    /// Revoke family `fam` (explicit revocation, code replay, refresh reuse).
    pub fn revoke_family(&self, fam: &str, exp: u64) {
        self.families
            .entry(fam.to_owned())
            .and_modify(|f| f.revoked = true)
            .or_insert(Family {
                generation: u32::MAX,
                exp,
                revoked: true,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new(Cluster::new(
            crate::cluster::KeyRing::random(),
            None,
            std::time::Duration::from_secs(60),
        ))
    }

    fn refresh() -> Refresh {
        Refresh {
            fam: "f".into(),
            generation: 0,
            client_id: "c".into(),
            person: Person {
                sub: "alice".into(),
                via: "key".into(),
                cred: "key:1".into(),
                groups: Vec::new(),
                tier: None,
                idp_refresh: None,
            },
            scope: String::new(),
            resource: "https://e/mcp".into(),
            exp: now_secs() + 60,
        }
    }

    #[test]
    fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
        let g = grants();
        let first = g.start_family(&refresh());
        let (_, second) = g.rotate(&first).unwrap();
        let (_, third) = g.rotate(&second).unwrap();
        assert_eq!(g.rotate(&first).unwrap_err().0, RefreshRefusal::Reused);
        assert_eq!(
            g.rotate(&third).unwrap_err().0,
            RefreshRefusal::Revoked,
            "the newest is dead too once the family is revoked"
        );
        assert_eq!(g.rotate("garbage").unwrap_err().0, RefreshRefusal::Invalid);
        let other = grants();
        assert_eq!(
            other.rotate(&first).unwrap_err().0,
            RefreshRefusal::Invalid,
            "another ring cannot open it"
        );
    }

    #[test]
    fn codes_are_single_use() {
        let g = grants();
        let code = Code {
            jti: "j".into(),
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            challenge: "x".into(),
            person: refresh().person,
            scope: String::new(),
            resource: "https://e/mcp".into(),
            exp: now_secs() + 60,
        };
        let sealed = g.seal_code(&code);
        let opened = g.open_code(&sealed).unwrap();
        assert_eq!(opened, code);
        assert!(g.use_code(&opened));
        assert!(!g.use_code(&opened));
        assert!(
            g.open_refresh(&sealed).is_none(),
            "a code is no refresh token"
        );
    }
}
