//! Access tokens the edge issues as its own authorization server (`[auth.oauth]`):
//! ES256 JWTs signed with P-256 keys from a secret file (the first signs, all verify,
//! rotated by rewriting the file) or one random key per process. Any replica with the
//! same key file validates them with no shared state. A token carries the refresh
//! family it came from, so revoking the family ends it at once on this replica.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::jwt::JwtRejection;

/// Why the signing-key file was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("OAuth signing key file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "OAuth signing key file {path}: no keys (PEM \"PRIVATE KEY\" blocks of P-256 keys; `mcp-edge gen-oauth-key` makes one)"
    )]
    Empty { path: PathBuf },
    #[error("OAuth signing key file {path}, key {index}: not a PKCS#8 P-256 private key")]
    BadKey { path: PathBuf, index: usize },
}

/// What an edge access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeClaims {
    pub iss: String,
    /// The principal.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The refresh-token family (one sign-in and consent) the token belongs to.
    pub fam: String,
    /// How the person signed in: `key` (their team API key) or `oidc` (the team's IdP).
    pub via: String,
    /// The API key behind a `key` sign-in (`key:<digest prefix>`; no key material),
    /// or the IdP account behind an `oidc` one (`oidc:<digest prefix>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cred: String,
    /// An `oidc` sign-in's groups (they act as scopes for `access.tool_scopes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grp: Vec<String>,
    /// An `oidc` sign-in's `[rate_limit.tiers]` entry, from its groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Public coordinates (base64url), for the JWKS document.
    x: String,
    y: String,
}

/// The keys in force: the first signs.
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} key(s))", self.keys.len())
    }
}

fn key_from(pair: &rcgen::KeyPair) -> Option<SigningKey> {
    let point = pair.public_key_raw();
    // An uncompressed P-256 point: 0x04 || x (32) || y (32).
    if point.len() != 65 || point[0] != 4 {
        return None;
    }
    let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&point[33..]);
    let kid = format!(
        "edge-{}",
        &URL_SAFE_NO_PAD.encode(Sha256::digest(point))[..12]
    );
    Some(SigningKey {
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).ok()?,
        decoding: DecodingKey::from_ec_components(&x, &y).ok()?,
        kid,
        x,
        y,
    })
}

impl SigningKeys {
    /// One random key, living only in this process.
    pub fn random() -> SigningKeys {
        let pair = rcgen::KeyPair::generate().expect("P-256 key generation");
        SigningKeys {
            keys: vec![key_from(&pair).expect("a fresh P-256 key")],
        }
    }

    pub fn load_file(path: &Path) -> Result<SigningKeys, SigningKeyError> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            SigningKeyError::Read {
                path: path.to_owned(),
                source,
            }
        })?);
        SigningKeys::parse(&text, path)
    }

    /// Every `PRIVATE KEY` PEM block, in order.
    pub fn parse(text: &str, path: &Path) -> Result<SigningKeys, SigningKeyError> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        const END: &str = "-----END PRIVATE KEY-----";
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let index = keys.len() + 1;
            let bad = || SigningKeyError::BadKey {
                path: path.to_owned(),
                index,
            };
            let end = rest[start..].find(END).ok_or_else(bad)? + start + END.len();
            let pem = zeroize::Zeroizing::new(rest[start..end].to_owned());
            let pair = rcgen::KeyPair::from_pem(&pem).map_err(|_| bad())?;
            if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
                return Err(bad());
            }
            keys.push(key_from(&pair).ok_or_else(bad)?);
            rest = &rest[end..];
        }
        if keys.is_empty() {
            return Err(SigningKeyError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(SigningKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                                   "kid": k.kid, "x": k.x, "y": k.y})
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A fresh P-256 key as PKCS#8 PEM, for the signing-key file.
pub fn generate_signing_key() -> zeroize::Zeroizing<String> {
    let pair = rcgen::KeyPair::generate().expect("P-256 key generation");
    zeroize::Zeroizing::new(pair.serialize_pem())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Issues and validates the edge's access tokens.
pub struct EdgeTokens {
    issuer: String,
    keys: ArcSwap<SigningKeys>,
    /// Revoked refresh families → when their last access token expires (unix s).
    revoked: DashMap<String, u64>,
    leeway: Duration,
    /// Tokens already verified (the whole token is the key, so a hit is exactly a
    /// token verified before): a client sends the same token with every call, and an
    /// ES256 verification costs more than the rest of a stateless call's
    /// authentication. Cleared on key rotation.
    verified: DashMap<Box<str>, Arc<EdgeClaims>>,
}

/// Verified tokens remembered at most (the map is cleared when full).
const VERIFIED_MAX: usize = 10_000;

impl EdgeTokens {
    pub fn new(issuer: String, keys: SigningKeys) -> Arc<EdgeTokens> {
        Arc::new(EdgeTokens {
            issuer,
            keys: ArcSwap::from_pointee(keys),
            revoked: DashMap::new(),
            // The edge checks its own clock: little skew to allow for between replicas.
            leeway: Duration::from_secs(5),
            verified: DashMap::new(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Publish a new, already validated key set.
    pub fn replace_keys(&self, keys: SigningKeys) {
        self.keys.store(Arc::new(keys));
        // A key taken out must not keep its tokens alive through the cache.
        self.verified.clear();
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.load().jwks()
    }

    pub fn sign(&self, claims: &EdgeClaims) -> String {
        let keys = self.keys.load();
        let key = &keys.keys[0];
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("ES256 signing")
    }

    /// Whether `token`'s header names one of this edge's keys (else it is some other
    /// issuer's JWT, for `[auth.jwt]`).
    pub fn is_ours(&self, token: &str) -> bool {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        let keys = self.keys.load();
        header
            .kid
            .is_some_and(|kid| kid.starts_with("edge-") && keys.keys.iter().any(|k| k.kid == kid))
    }

    /// `None` when `token` is not one of this edge's (another issuer's JWT); else the
    /// claims of a valid, unrevoked token for one of `audiences`, or why not.
    pub fn check(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Option<Result<Arc<EdgeClaims>, JwtRejection>> {
        if let Some(claims) = self.verified.get(token).map(|c| c.clone()) {
            return Some(self.still_good(token, claims, audiences));
        }
        if !self.is_ours(token) {
            return None;
        }
        Some(self.verify(token, audiences))
    }

    /// The claims of a valid, unrevoked token for one of `audiences`: from the cache of
    /// verified tokens while it has not expired, else verified in full.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Arc<EdgeClaims>, JwtRejection> {
        if let Some(claims) = self.verified.get(token).map(|c| c.clone()) {
            return self.still_good(token, claims, audiences);
        }
        let claims = Arc::new(self.verify_in_full(token, audiences)?);
        if self.verified.len() >= VERIFIED_MAX {
            self.verified.clear();
        }
        self.verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// A cached token's claims, checked again for what changes with time.
    fn still_good(
        &self,
        token: &str,
        claims: Arc<EdgeClaims>,
        audiences: &[String],
    ) -> Result<Arc<EdgeClaims>, JwtRejection> {
        if claims.exp + self.leeway.as_secs() <= now_secs() {
            self.verified.remove(token);
            return Err(JwtRejection::Expired);
        }
        if self.revoked.contains_key(&claims.fam) {
            return Err(JwtRejection::Revoked);
        }
        if !audiences.contains(&claims.aud) {
            return Err(JwtRejection::WrongAudience);
        }
        Ok(claims)
    }

    fn verify_in_full(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<EdgeClaims, JwtRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(JwtRejection::DisallowedAlgorithm);
        }
        let keys = self.keys.load();
        let key = header
            .kid
            .and_then(|kid| keys.keys.iter().find(|k| k.kid == kid))
            .ok_or(JwtRejection::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.leeway = self.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<EdgeClaims>(token, &key.decoding, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => JwtRejection::Expired,
                    ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
                    ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
                    ErrorKind::InvalidSignature => JwtRejection::BadSignature,
                    ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
                    ErrorKind::MissingRequiredClaim(c) => JwtRejection::MissingClaim(c.clone()),
                    _ => JwtRejection::Malformed,
                }
            })?;
        if self.revoked.contains_key(&data.claims.fam) {
            return Err(JwtRejection::Revoked);
        }
        Ok(data.claims)
    }

    /// End every access token of refresh family `fam` at once (until `until`, when
    /// the last of them expires anyway).
    pub fn revoke_family(&self, fam: &str, until: u64) {
        let now = now_secs();
        if self.revoked.len() > 10_000 {
            self.revoked.retain(|_, exp| *exp > now);
        }
        self.revoked.insert(fam.to_owned(), until);
    }

    pub fn is_revoked(&self, fam: &str) -> bool {
        self.revoked.contains_key(fam)
    }
}

/// The signing-key file (`auth.oauth.signing_key_file`): reloaded whole, the last
/// good keys kept when the new file is bad.
pub struct SigningKeyFile {
    pub path: PathBuf,
    pub tokens: Arc<EdgeTokens>,
}

#[async_trait::async_trait]
impl crate::reload::Reload for SigningKeyFile {
    fn kind(&self) -> &'static str {
        "oauth_signing_keys"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Files(vec![self.path.clone()])
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        let keys = SigningKeys::load_file(&self.path).map_err(crate::reload::ReloadError::new)?;
        let n = keys.len();
        self.tokens.replace_keys(keys);
        Ok(format!("{n} OAuth signing key(s) in force"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, exp: u64) -> EdgeClaims {
        EdgeClaims {
            iss: "https://edge.test".into(),
            sub: "alice".into(),
            aud: aud.into(),
            exp,
            iat: now_secs(),
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: String::new(),
            fam: "f1".into(),
            via: "key".into(),
            cred: "key:abc".into(),
            grp: Vec::new(),
            tier: None,
        }
    }

    #[test]
    fn issued_tokens_verify_and_refusals_name_their_reason() {
        let tokens = EdgeTokens::new("https://edge.test".into(), SigningKeys::random());
        let aud = vec!["https://edge.test/mcp".to_string()];
        let good = tokens.sign(&claims(&aud[0], now_secs() + 60));
        assert!(tokens.is_ours(&good));
        assert_eq!(tokens.verify(&good, &aud).unwrap().sub, "alice");
        let other_aud = tokens.sign(&claims("https://other.test/mcp", now_secs() + 60));
        assert_eq!(
            tokens.verify(&other_aud, &aud),
            Err(JwtRejection::WrongAudience)
        );
        let expired = tokens.sign(&claims(&aud[0], now_secs() - 120));
        assert_eq!(tokens.verify(&expired, &aud), Err(JwtRejection::Expired));
        let mut tampered = good.clone().into_bytes();
        let i = tampered.len() - 5;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(tokens.verify(&tampered, &aud).is_err());
        // Another edge's key (another issuer's token) is not ours.
        let other = EdgeTokens::new("https://edge.test".into(), SigningKeys::random());
        assert!(!other.is_ours(&good));
        assert_eq!(other.verify(&good, &aud), Err(JwtRejection::UnknownKey));
        tokens.revoke_family("f1", now_secs() + 60);
        assert_eq!(tokens.verify(&good, &aud), Err(JwtRejection::Revoked));
    }

    #[test]
    fn key_files_rotate_first_signs_all_verify() {
        let path = Path::new("/run/secrets/oauth_signing_key");
        let (a, b) = (generate_signing_key(), generate_signing_key());
        let one = SigningKeys::parse(&a, path).unwrap();
        let both = SigningKeys::parse(&format!("{}\n{}", *b, *a), path).unwrap();
        assert_eq!(both.len(), 2);
        let tokens = EdgeTokens::new("https://edge.test".into(), one);
        let aud = vec!["https://edge.test/mcp".to_string()];
        let old = tokens.sign(&claims(&aud[0], now_secs() + 60));
        tokens.replace_keys(both);
        assert!(
            tokens.verify(&old, &aud).is_ok(),
            "the old key still verifies"
        );
        let new = tokens.sign(&claims(&aud[0], now_secs() + 60));
        assert_ne!(
            jsonwebtoken::decode_header(&new).unwrap().kid,
            jsonwebtoken::decode_header(&old).unwrap().kid
        );
        assert_eq!(tokens.jwks()["keys"].as_array().unwrap().len(), 2);
        let err = SigningKeys::parse("nothing here", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no keys"), "{err}");
        let err = SigningKeys::parse(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key 1") && !err.contains("AAAA"), "{err}");
    }
}
