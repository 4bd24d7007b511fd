//! What the token endpoint trades: authorization codes and refresh tokens, both
//! sealed with the cluster key ring (so any replica sharing the ring reads them),
//! and the little state that sealing cannot carry: which codes were used (single
//! use) and each refresh family's current generation (rotation with reuse
//! detection: a refresh token used twice revokes its whole family).
//!
//! That state lives in Redis when `redis.url` is set (every replica shares it, and it
//! survives restarts), else in this process: a single replica then forgets it on
//! restart, so its refresh tokens stop working (the person signs in again); access
//! tokens stay valid until they expire when the signing key comes from a file. With
//! Redis, a family's state is Redis's alone: Redis unreachable means no code or
//! refresh token is accepted until it is back (never a silent local fallback, which
//! would let a reused token through).

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
    /// The shared state (Redis) cannot be reached: try again later.
    Unavailable,
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
    redis: Option<std::sync::Arc<crate::ratelimit::redis::RedisStore>>,
}

/// Redis cannot be reached (a code or refresh token cannot be judged now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

pub fn random_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Grants {
    pub fn new(
        cluster: std::sync::Arc<Cluster>,
        redis: Option<std::sync::Arc<crate::ratelimit::redis::RedisStore>>,
    ) -> Grants {
        Grants {
            cluster,
            used_codes: DashMap::new(),
            families: DashMap::new(),
            redis,
        }
    }

    pub fn redis(&self) -> Option<&std::sync::Arc<crate::ratelimit::redis::RedisStore>> {
        self.redis.as_ref()
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
    pub async fn use_code(&self, code: &Code) -> Result<bool, Unavailable> {
        if let Some(redis) = &self.redis {
            let ttl = std::time::Duration::from_secs(2 * CODE_TTL_SECS + 60);
            return redis
                .use_code(&code.jti, ttl)
                .await
                .map_err(|_| Unavailable);
        }
        Ok(self.use_code_here(code))
    }

    fn use_code_here(&self, code: &Code) -> bool {
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
    pub async fn start_family(&self, refresh: &Refresh) -> Result<String, Unavailable> {
        if let Some(redis) = &self.redis {
            let ttl = std::time::Duration::from_secs(refresh.exp.saturating_sub(now_secs()) + 60);
            redis
                .start_family(&refresh.fam, refresh.generation, ttl)
                .await
                .map_err(|_| Unavailable)?;
            return Ok(self.seal_refresh(refresh));
        }
        Ok(self.start_family_here(refresh))
    }

    fn start_family_here(&self, refresh: &Refresh) -> String {
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
    pub async fn rotate(&self, sealed: &str) -> Result<(Refresh, String), Refused> {
        self.judge_anywhere(sealed, true).await
    }

    /// What [`Grants::rotate`] would say, without rotating (a reused token still
    /// revokes its family). Returns the token's contents.
    pub async fn peek(&self, sealed: &str) -> Result<Refresh, Refused> {
        self.judge_anywhere(sealed, false)
            .await
            .map(|(refresh, _)| refresh)
    }

    /// [`Grants::judge`] against Redis when it is configured.
    async fn judge_anywhere(
        &self,
        sealed: &str,
        rotate: bool,
    ) -> Result<(Refresh, String), Refused> {
        let Some(redis) = &self.redis else {
            return self.judge(sealed, rotate);
        };
        let refresh = self
            .open_refresh(sealed)
            .ok_or((RefreshRefusal::Invalid, None))?;
        if refresh.exp <= now_secs() {
            return Err((RefreshRefusal::Invalid, Some(Box::new(refresh))));
        }
        let verdict = redis
            .judge_family(&refresh.fam, refresh.generation, rotate)
            .await
            .map_err(|_| (RefreshRefusal::Unavailable, None))?;
        match verdict {
            -1 => Err((RefreshRefusal::UnknownFamily, Some(Box::new(refresh)))),
            -2 => Err((RefreshRefusal::Revoked, Some(Box::new(refresh)))),
            -3 => Err((RefreshRefusal::Reused, Some(Box::new(refresh)))),
            _ if !rotate => Ok((refresh, String::new())),
            next => {
                let next = Refresh {
                    generation: u32::try_from(next).unwrap_or(u32::MAX),
                    ..refresh
                };
                let sealed = self.seal_refresh(&next);
                Ok((next, sealed))
            }
        }
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

    /// Revoke family `fam` (explicit revocation, code replay, refresh reuse), and with
    /// Redis publish it to every replica until `access_until` (its last access token's
    /// expiry).
    pub async fn revoke_family(&self, fam: &str, exp: u64, access_until: u64) {
        self.revoke_family_here(fam, exp);
        if let Some(redis) = &self.redis {
            let ttl = std::time::Duration::from_secs(exp.saturating_sub(now_secs()) + 60);
            if redis.revoke_family(fam, ttl, access_until).await.is_err() {
                tracing::warn!(
                    "redis unreachable: a revoked sign-in is revoked on this replica only until it is back"
                );
            }
        }
    }

    fn revoke_family_here(&self, fam: &str, exp: u64) {
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
        Grants::new(
            Cluster::new(
                crate::cluster::KeyRing::random(),
                None,
                std::time::Duration::from_secs(60),
            ),
            None,
        )
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
        let first = g.start_family_here(&refresh());
        let (_, second) = g.judge(&first, true).unwrap();
        let (_, third) = g.judge(&second, true).unwrap();
        assert_eq!(g.judge(&first, true).unwrap_err().0, RefreshRefusal::Reused);
        assert_eq!(
            g.judge(&third, true).unwrap_err().0,
            RefreshRefusal::Revoked,
            "the newest is dead too once the family is revoked"
        );
        assert_eq!(
            g.judge("garbage", true).unwrap_err().0,
            RefreshRefusal::Invalid
        );
        let other = grants();
        assert_eq!(
            other.judge(&first, true).unwrap_err().0,
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
        assert!(g.use_code_here(&opened));
        assert!(!g.use_code_here(&opened));
        assert!(
            g.open_refresh(&sealed).is_none(),
            "a code is no refresh token"
        );
    }
}
