//! Who is calling: bearer credentials (API keys and/or JWTs) checked against key sets
//! that are swapped atomically when their secret files change.

pub mod access;
pub mod api_keys;
pub mod edge_token;
pub mod jwt;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

pub use access::{ToolDenied, ToolPolicy};
pub use api_keys::{ApiKeysError, KeyContext, KeyStore};
pub use edge_token::{EdgeClaims, EdgeTokens, SigningKeys};
pub use jwt::{JwtRejection, JwtVerifier};

use crate::config::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    ApiKey,
    Jwt,
    /// Signed in at the edge through the team's OpenID provider (`[auth.oauth.oidc]`);
    /// its groups act as scopes for `access.tool_scopes`.
    Oidc,
    Anonymous,
}

/// An authenticated caller. Rate limits and session ownership are keyed by `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: Arc<str>,
    pub kind: PrincipalKind,
    /// Which credential authenticated this request (a key's digest prefix, or the JWT
    /// signing key). Safe to log; used to end sessions when that credential is revoked.
    pub credential: Arc<str>,
    /// A per-principal rate and burst overriding the default.
    pub limit: Option<(Rate, NonZeroU32)>,
    /// API keys: the tools this principal may see and call (names or `prefix*` globs).
    pub tools: Option<Arc<[String]>>,
    /// JWTs: the token's scopes.
    pub scopes: Option<Arc<BTreeSet<String>>>,
    /// JWTs: the token's `jti`, when it has one (for the audit trail).
    pub token_id: Option<Arc<str>>,
}

impl Principal {
    pub fn new(name: &str) -> Principal {
        Principal {
            name: name.into(),
            kind: PrincipalKind::ApiKey,
            credential: "".into(),
            limit: None,
            tools: None,
            scopes: None,
            token_id: None,
        }
    }

    /// The caller when auth is off (loopback only).
    pub fn anonymous() -> Principal {
        Principal {
            kind: PrincipalKind::Anonymous,
            credential: "anonymous".into(),
            ..Principal::new("anonymous")
        }
    }
}

/// Why a request was not authenticated; becomes a 401 challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("malformed Authorization header: expected `Bearer <token>`")]
    Malformed,
    #[error("invalid or revoked API key")]
    InvalidKey,
    #[error("invalid token: {0}")]
    InvalidToken(JwtRejection),
}

impl AuthFailure {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::InvalidKey => "invalid_key",
            AuthFailure::InvalidToken(r) => r.reason(),
        }
    }
}

/// The bearer token from `Authorization`, never from anywhere else (not a query string).
pub fn bearer_token(headers: &HeaderMap) -> Result<SecretString, AuthFailure> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthFailure::Missing)?;
    if values.next().is_some() {
        return Err(AuthFailure::Malformed);
    }
    let text = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthFailure::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthFailure::Malformed);
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Compact JWS: three base64url parts, the header starting with `{"` (`eyJ`).
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The configured authentication.
pub struct Authenticator {
    api_keys: Option<ArcSwap<KeyStore>>,
    jwt: Option<JwtVerifier>,
    edge: Option<EdgeAuth>,
}

/// The edge's own access tokens (`[auth.oauth]`) and the audiences they may name.
struct EdgeAuth {
    tokens: Arc<EdgeTokens>,
    audiences: Vec<String>,
    /// `[rate_limit.tiers]`, for an IdP principal's group tier.
    tiers: std::collections::BTreeMap<String, (crate::config::Rate, NonZeroU32)>,
}

impl Authenticator {
    pub fn new(api_keys: Option<KeyStore>, jwt: Option<JwtVerifier>) -> Authenticator {
        Authenticator {
            api_keys: api_keys.map(ArcSwap::from_pointee),
            jwt,
            edge: None,
        }
    }

    /// Also accept the edge's own access tokens for any of `audiences`.
    pub fn with_edge_tokens(
        mut self,
        tokens: Arc<EdgeTokens>,
        audiences: Vec<String>,
        tiers: std::collections::BTreeMap<String, (crate::config::Rate, NonZeroU32)>,
    ) -> Self {
        self.edge = Some(EdgeAuth {
            tokens,
            audiences,
            tiers,
        });
        self
    }

    /// No authentication (loopback only).
    pub fn none() -> Authenticator {
        Authenticator {
            api_keys: None,
            jwt: None,
            edge: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.api_keys.is_some() || self.jwt.is_some() || self.edge.is_some()
    }

    /// The principal of a team API key presented at OAuth sign-in (not a bearer
    /// header): the same check as on `/mcp`.
    pub fn verify_key(&self, key: &SecretString) -> Option<Arc<Principal>> {
        self.api_keys.as_ref()?.load().verify(key)
    }

    /// The key principal whose key `credential` names, while that key is valid.
    pub fn key_by_credential(&self, credential: &str) -> Option<Arc<Principal>> {
        self.api_keys.as_ref()?.load().by_credential(credential)
    }

    /// An edge access token: its principal is the one its sign-in found, as it is
    /// now (a key principal's current rate and tool list; gone when its key is).
    fn edge_principal(
        &self,
        edge: &EdgeAuth,
        claims: &EdgeClaims,
    ) -> Result<Principal, AuthFailure> {
        let mut principal = match claims.via.as_str() {
            "key" => self
                .key_by_credential(&claims.cred)
                .map(|p| p.as_ref().clone())
                .ok_or(AuthFailure::InvalidToken(JwtRejection::CredentialGone))?,
            "oidc" => Principal {
                kind: PrincipalKind::Oidc,
                credential: claims.cred.clone().into(),
                limit: claims
                    .tier
                    .as_ref()
                    .and_then(|t| edge.tiers.get(t).copied()),
                scopes: Some(Arc::new(claims.grp.iter().cloned().collect())),
                ..Principal::new(&claims.sub)
            },
            _ => return Err(AuthFailure::InvalidToken(JwtRejection::Malformed)),
        };
        principal.token_id = Some(claims.jti.as_str().into());
        Ok(principal)
    }

    pub fn jwt(&self) -> Option<&JwtVerifier> {
        self.jwt.as_ref()
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, AuthFailure> {
        if !self.is_enabled() {
            return Ok(Arc::new(Principal::anonymous()));
        }
        let token = bearer_token(headers)?;
        if let Some(edge) = &self.edge
            && looks_like_jwt(token.expose_secret())
            && let Some(checked) = edge.tokens.check(token.expose_secret(), &edge.audiences)
        {
            let claims = checked.map_err(AuthFailure::InvalidToken)?;
            return self.edge_principal(edge, &claims).map(Arc::new);
        }
        if let Some(jwt) = &self.jwt
            && (self.api_keys.is_none() || looks_like_jwt(token.expose_secret()))
        {
            let principal = jwt
                .verify(token.expose_secret())
                .await
                .map_err(AuthFailure::InvalidToken)?;
            return Ok(Arc::new(self.merge_with_key_principal(principal)));
        }
        match &self.api_keys {
            Some(store) => store.load().verify(&token).ok_or(AuthFailure::InvalidKey),
            None => Err(AuthFailure::InvalidKey),
        }
    }

    /// With `auth.jwt.principal_prefix = ""` a JWT subject *is* the API-key principal of
    /// that name: it takes that principal's keys-file rate and tool list, so both
    /// credentials share one budget and one access list.
    fn merge_with_key_principal(&self, mut principal: Principal) -> Principal {
        let Some(store) = &self.api_keys else {
            return principal;
        };
        if let Some(key_principal) = store.load().principal_named(&principal.name) {
            if key_principal.limit.is_some() {
                principal.limit = key_principal.limit;
            }
            principal.tools = key_principal.tools.clone();
        }
        principal
    }

    /// Publish a new, already validated key set; returns the credentials it revoked.
    pub fn replace_keys(&self, store: KeyStore) -> Vec<Arc<str>> {
        let Some(current) = &self.api_keys else {
            return Vec::new();
        };
        let new_credentials = store.credentials();
        let old = current.swap(Arc::new(store));
        old.credentials()
            .into_iter()
            .filter(|c| !new_credentials.contains(c))
            .collect()
    }
}

/// A fresh random API key for the dev profile.
pub fn generate_key() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!("mcp-dev-{}", hex::encode(bytes)))
}

/// The JWT verification keys read from files (`auth.jwt.key_file`, `jwks_file`).
pub struct JwtKeyFiles {
    pub config: crate::config::JwtConfig,
    pub auth: Arc<Authenticator>,
}

#[async_trait::async_trait]
impl crate::reload::Reload for JwtKeyFiles {
    fn kind(&self) -> &'static str {
        "jwt_keys"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Files(jwt::local_key_files(&self.config))
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        let keys = jwt::load_local_keys(&self.config).map_err(crate::reload::ReloadError::new)?;
        let n = keys.len();
        if let Some(verifier) = self.auth.jwt() {
            verifier.replace_local(keys);
        }
        Ok(format!("{n} JWT key(s) in force"))
    }
}

/// The keys published at `auth.jwt.jwks_url`, refetched every `auth.jwt.jwks_refresh`
/// (and, throttled, when a token names an unknown `kid`). A failed fetch keeps the
/// last keys.
pub struct RemoteJwks {
    auth: Arc<Authenticator>,
    every: std::time::Duration,
}

impl RemoteJwks {
    /// `None` unless JWTs are verified against a JWKS URL.
    pub fn new(auth: &Arc<Authenticator>) -> Option<RemoteJwks> {
        let every = auth.jwt()?.jwks_refresh_interval()?;
        Some(RemoteJwks {
            auth: auth.clone(),
            every,
        })
    }

    /// The first fetch, at start. A failure does not stop the start: API keys may
    /// still work, the timer tries again, and an unknown `kid` triggers a refetch.
    pub async fn fetch_at_start(&self) {
        let Some(jwt) = self.auth.jwt() else {
            return;
        };
        match jwt.refresh_remote().await {
            Some(Ok(n)) => tracing::info!(keys = n, "JWKS fetched"),
            Some(Err(e)) => tracing::error!(error = %e, "JWKS fetch failed at start"),
            None => {}
        }
    }
}

#[async_trait::async_trait]
impl crate::reload::Reload for RemoteJwks {
    fn kind(&self) -> &'static str {
        "jwks"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Every(self.every)
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        match self.auth.jwt() {
            Some(jwt) => match jwt.refresh_remote().await {
                Some(Ok(n)) => Ok(format!("{n} JWKS key(s) in force")),
                Some(Err(e)) => Err(crate::reload::ReloadError::new(e)),
                None => Ok("no JWKS URL".into()),
            },
            None => Ok("no JWT verifier".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn an_idp_sign_in_token_carries_its_groups_as_scopes_and_its_tier_as_limit() {
        use crate::config::Rate;
        let tokens = EdgeTokens::new("https://edge.test".into(), SigningKeys::random());
        let gold = (
            Rate::parse("6000/min").unwrap(),
            NonZeroU32::new(500).unwrap(),
        );
        let auth = Authenticator::new(None, None).with_edge_tokens(
            tokens.clone(),
            vec!["https://edge.test/mcp".into()],
            [("gold".to_string(), gold)].into(),
        );
        let token = tokens.sign(&EdgeClaims {
            iss: "https://edge.test".into(),
            sub: "bob@example.com".into(),
            aud: "https://edge.test/mcp".into(),
            exp: edge_token::now_secs() + 60,
            iat: edge_token::now_secs(),
            jti: "j".into(),
            client_id: "c".into(),
            scope: String::new(),
            fam: "f".into(),
            via: "oidc".into(),
            cred: "oidc:0123456789ab".into(),
            grp: vec!["eng".into(), "gold-team".into()],
            tier: Some("gold".into()),
        });
        let principal = auth
            .authenticate(&headers(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert_eq!(&*principal.name, "bob@example.com");
        assert_eq!(principal.kind, PrincipalKind::Oidc);
        assert_eq!(
            principal.limit,
            Some(gold),
            "the group's tier is its rate limit"
        );
        let scopes = principal.scopes.as_ref().unwrap();
        assert!(scopes.contains("gold-team") && scopes.contains("eng"));
        assert_eq!(principal.token_id.as_deref(), Some("j"));
        // Revoked at once, from the cache too.
        tokens.revoke_family("f", edge_token::now_secs() + 60);
        assert!(
            auth.authenticate(&headers(&format!("Bearer {token}")))
                .await
                .is_err()
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer_token(&HeaderMap::new()).unwrap_err(),
            AuthFailure::Missing
        );
        assert_eq!(
            bearer_token(&headers("Basic abc")).unwrap_err(),
            AuthFailure::Malformed
        );
        assert_eq!(
            bearer_token(&headers("Bearer ")).unwrap_err(),
            AuthFailure::Malformed
        );
        assert!(bearer_token(&headers("bearer abc")).is_ok());
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.sig"));
        assert!(!looks_like_jwt("alice-key-0123456789"));
        assert!(!looks_like_jwt("eyJonly.two"));
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.expose_secret().len() >= 40);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
