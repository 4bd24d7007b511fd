//! JWT validation (jsonwebtoken, aws-lc-rs backend only).
//!
//! Each verification key carries the algorithms the config allows for it, so an
//! HMAC token is never checked against an RSA public key (algorithm confusion) and
//! `alg: none` cannot be expressed at all. Keys are selected by `kid` when the token
//! has one. Local keys (PEM files, a JWKS file) are swapped on rotation; a JWKS URL is
//! fetched, cached, refreshed on a timer and on an unknown `kid` (rate-limited).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{Principal, PrincipalKind};
use crate::config::{JwtConfig, JwtKeyConfig, Rate};

/// Why a token was refused. The text goes into `error_description`; it never
/// contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    #[error("token larger than the configured maximum")]
    TooLarge,
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("signing algorithm not accepted")]
    DisallowedAlgorithm,
    #[error("unknown signing key (kid)")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token audience is not this resource")]
    WrongAudience,
    #[error("token issuer is not trusted")]
    WrongIssuer,
    #[error("token lacks required claim {0}")]
    MissingClaim(String),
    #[error("token marks header parameters critical that this server does not understand")]
    UnsupportedCritical,
    #[error("token revoked")]
    Revoked,
    #[error("the API key this sign-in used is no longer valid; sign in again")]
    CredentialGone,
}

impl JwtRejection {
    pub fn reason(&self) -> &'static str {
        match self {
            JwtRejection::TooLarge => "jwt_too_large",
            JwtRejection::Malformed => "jwt_malformed",
            JwtRejection::DisallowedAlgorithm => "jwt_algorithm",
            JwtRejection::UnknownKey => "jwt_unknown_kid",
            JwtRejection::BadSignature => "jwt_signature",
            JwtRejection::Expired => "jwt_expired",
            JwtRejection::NotYetValid => "jwt_not_yet_valid",
            JwtRejection::WrongAudience => "jwt_audience",
            JwtRejection::WrongIssuer => "jwt_issuer",
            JwtRejection::MissingClaim(_) => "jwt_claim",
            JwtRejection::UnsupportedCritical => "jwt_crit",
            JwtRejection::Revoked => "token_revoked",
            JwtRejection::CredentialGone => "credential_gone",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    #[error("cannot read JWT key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JWT key file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("JWKS {source_name}: {message}")]
    Jwks {
        source_name: String,
        message: String,
    },
}

/// One key that may verify tokens.
pub struct VerifyingKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    /// A loggable name: `jwt:<kid>` or `jwt:<file>`.
    id: Arc<str>,
}

/// The current set of verification keys.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Minimum HMAC secret length: shorter secrets can be brute-forced offline.
const MIN_HMAC_SECRET: usize = 32;

fn invalid(path: &Path, message: impl Into<String>) -> JwtKeyError {
    JwtKeyError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Load one configured key file (a shared secret or a PEM public key).
pub fn load_key_file(config: &JwtKeyConfig) -> Result<VerifyingKey, JwtKeyError> {
    let path = &config.file;
    let bytes = std::fs::read(path).map_err(|source| JwtKeyError::Read {
        path: path.clone(),
        source,
    })?;
    let family = config
        .algorithms
        .first()
        .ok_or_else(|| invalid(path, "no algorithms configured"))?
        .family();
    use jsonwebtoken::AlgorithmFamily as F;
    let key = match family {
        F::Hmac => {
            if bytes.starts_with(b"-----BEGIN") {
                // An HMAC "secret" that is a PEM public key is the algorithm-confusion setup.
                return Err(invalid(
                    path,
                    "holds a PEM key but is configured for HS* (HMAC needs a shared secret)",
                ));
            }
            let secret = bytes.trim_ascii();
            if secret.len() < MIN_HMAC_SECRET {
                return Err(invalid(
                    path,
                    format!("HMAC secret shorter than {MIN_HMAC_SECRET} bytes"),
                ));
            }
            DecodingKey::from_secret(secret)
        }
        F::Rsa => DecodingKey::from_rsa_pem(&bytes)
            .map_err(|e| invalid(path, format!("not an RSA public key PEM: {e}")))?,
        F::Ec => DecodingKey::from_ec_pem(&bytes)
            .map_err(|e| invalid(path, format!("not an EC public key PEM: {e}")))?,
        F::Ed => DecodingKey::from_ed_pem(&bytes)
            .map_err(|e| invalid(path, format!("not an Ed25519 public key PEM: {e}")))?,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(VerifyingKey {
        id: format!("jwt:{}", config.kid.as_deref().unwrap_or(&name)).into(),
        kid: config.kid.clone(),
        algorithms: config.algorithms.clone(),
        key,
    })
}

/// Parse a JWKS document. Only asymmetric keys are taken; each key's algorithm is
/// its `alg`, or the one its type and curve imply.
pub fn parse_jwks(text: &str, source_name: &str) -> Result<Vec<VerifyingKey>, JwtKeyError> {
    let jwks_err = |message: String| JwtKeyError::Jwks {
        source_name: source_name.to_owned(),
        message,
    };
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| jwks_err(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
            AlgorithmParameters::OctetKey(_) => {
                tracing::warn!(source = source_name, "JWKS: skipping a symmetric (oct) key");
                continue;
            }
            _ => None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(ka) => ka.to_string().parse::<Algorithm>().ok(),
            None => implied,
        };
        let Some(alg) = alg else {
            tracing::warn!(source = source_name, kid = ?jwk.common.key_id, "JWKS: skipping a key with an unsupported algorithm");
            continue;
        };
        if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            jwks_err(format!(
                "key {:?}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("?")
            ))
        })?;
        keys.push(VerifyingKey {
            id: format!(
                "jwt:{}",
                jwk.common.key_id.as_deref().unwrap_or(source_name)
            )
            .into(),
            kid: jwk.common.key_id.clone(),
            algorithms: vec![alg],
            key,
        });
    }
    if keys.is_empty() {
        return Err(jwks_err("no usable keys".into()));
    }
    Ok(keys)
}

/// Everything loaded from local files: key files and the JWKS file.
pub fn load_local_keys(config: &JwtConfig) -> Result<KeySet, JwtKeyError> {
    let mut keys = Vec::new();
    for k in &config.keys {
        keys.push(load_key_file(k)?);
    }
    if let Some(path) = &config.jwks_file {
        let text = std::fs::read_to_string(path).map_err(|source| JwtKeyError::Read {
            path: path.clone(),
            source,
        })?;
        keys.extend(parse_jwks(&text, &path.display().to_string())?);
    }
    Ok(KeySet { keys })
}

/// The files to watch for local JWT key rotation.
pub fn local_key_files(config: &JwtConfig) -> Vec<PathBuf> {
    config
        .keys
        .iter()
        .map(|k| k.file.clone())
        .chain(config.jwks_file.clone())
        .collect()
}

struct Remote {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
}

impl Remote {
    async fn fetch(&self) -> Result<usize, JwtKeyError> {
        let err = |message: String| JwtKeyError::Jwks {
            source_name: self.url.clone(),
            message,
        };
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| err(format!("fetch failed: {e}")))?;
        if !response.status().is_success() {
            return Err(err(format!("fetch answered {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| err(format!("read failed: {e}")))?;
        if body.len() > 1 << 20 {
            return Err(err("document larger than 1 MiB".into()));
        }
        let text = String::from_utf8_lossy(&body);
        let keys = parse_jwks(&text, &self.url)?;
        let n = keys.len();
        self.keys.store(Arc::new(KeySet { keys }));
        Ok(n)
    }

    /// Refetch unless one happened within `min_refetch` (an unknown `kid` must not
    /// let clients hammer the identity provider).
    async fn refetch_if_due(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(n) => {
                tracing::info!(url = %self.url, keys = n, "JWKS refreshed");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "JWKS refresh failed; keeping the last keys");
                false
            }
        }
    }
}

/// Verifies bearer JWTs and turns their claims into a [`Principal`].
pub struct JwtVerifier {
    config: JwtConfig,
    local: ArcSwap<KeySet>,
    remote: Option<Remote>,
    tiers: BTreeMap<String, (Rate, NonZeroU32)>,
}

impl JwtVerifier {
    pub fn new(
        config: JwtConfig,
        local: KeySet,
        tiers: BTreeMap<String, (Rate, NonZeroU32)>,
    ) -> Result<JwtVerifier, JwtKeyError> {
        let remote = match &config.jwks_url {
            None => None,
            Some(url) => {
                let mut builder = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca) = &config.jwks_ca_file {
                    let pem = std::fs::read(ca).map_err(|source| JwtKeyError::Read {
                        path: ca.clone(),
                        source,
                    })?;
                    let cert = reqwest::Certificate::from_pem(&pem)
                        .map_err(|e| invalid(ca, format!("not a PEM CA certificate: {e}")))?;
                    builder = builder.tls_certs_only([cert]);
                }
                let client = builder.build().map_err(|e| JwtKeyError::Jwks {
                    source_name: url.clone(),
                    message: format!("cannot build HTTP client: {e}"),
                })?;
                Some(Remote {
                    url: url.clone(),
                    client,
                    keys: ArcSwap::from_pointee(KeySet::default()),
                    last_fetch: tokio::sync::Mutex::new(None),
                    min_refetch: Duration::from_secs(30),
                })
            }
        };
        Ok(JwtVerifier {
            config,
            local: ArcSwap::from_pointee(local),
            remote,
            tiers,
        })
    }

    /// Publish a new, validated set of local keys.
    pub fn replace_local(&self, keys: KeySet) {
        self.local.store(Arc::new(keys));
    }

    /// Fetch the JWKS URL now (at start and on the refresh timer).
    pub async fn refresh_remote(&self) -> Option<Result<usize, JwtKeyError>> {
        // Timer fetches do not count against the unknown-kid refetch throttle.
        let remote = self.remote.as_ref()?;
        Some(remote.fetch().await)
    }

    pub fn jwks_refresh_interval(&self) -> Option<Duration> {
        self.remote.as_ref().map(|_| self.config.jwks_refresh)
    }

    fn candidates<'a>(
        sets: &'a [Arc<KeySet>],
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Vec<&'a VerifyingKey> {
        sets.iter()
            .flat_map(|s| s.keys.iter())
            .filter(|k| match (kid, &k.kid) {
                (Some(t), Some(k)) => t == k,
                // A token naming a kid only matches keys with that kid.
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|k| k.algorithms.contains(&alg))
            .collect()
    }

    fn key_sets(&self) -> Vec<Arc<KeySet>> {
        let mut sets = vec![self.local.load_full()];
        if let Some(r) = &self.remote {
            sets.push(r.keys.load_full());
        }
        sets
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, JwtRejection> {
        if token.len() > self.config.max_token_bytes {
            return Err(JwtRejection::TooLarge);
        }
        // Unknown algorithms, including "none", fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        // RFC 7515 §4.1.11: a recipient must reject a token whose `crit` names an
        // extension it does not understand. This server understands none (and an empty
        // `crit` list is itself invalid), so any `crit` is refused.
        if header.crit.is_some() {
            return Err(JwtRejection::UnsupportedCritical);
        }
        let kid = header.kid.as_deref();
        let mut sets = self.key_sets();
        let kid_known =
            |sets: &[Arc<KeySet>]| kid.is_none_or(|k| sets.iter().any(|s| s.has_kid(k)));
        if !kid_known(&sets)
            && let Some(remote) = &self.remote
            && remote.refetch_if_due().await
        {
            sets = self.key_sets();
        }
        if !kid_known(&sets) {
            return Err(JwtRejection::UnknownKey);
        }
        let candidates = Self::candidates(&sets, kid, header.alg);
        if candidates.is_empty() {
            return Err(JwtRejection::DisallowedAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = JwtRejection::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(
                token,
                &key.key,
                &validation,
            ) {
                Ok(data) => return self.principal(data.claims, key),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => {
                            // Another key with the same kid/alg may still verify it.
                            continue;
                        }
                        ErrorKind::ExpiredSignature => JwtRejection::Expired,
                        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
                        ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
                        ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
                        ErrorKind::MissingRequiredClaim(c) => JwtRejection::MissingClaim(c.clone()),
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                            JwtRejection::DisallowedAlgorithm
                        }
                        _ => JwtRejection::Malformed,
                    };
                    return Err(last);
                }
            }
        }
        Err(last)
    }

    fn principal(
        &self,
        claims: serde_json::Map<String, Value>,
        key: &VerifyingKey,
    ) -> Result<Principal, JwtRejection> {
        for claim in &self.config.required_claims {
            if claims.get(claim).is_none_or(Value::is_null) {
                return Err(JwtRejection::MissingClaim(claim.clone()));
            }
        }
        let name = claims
            .get(&self.config.principal_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| JwtRejection::MissingClaim(self.config.principal_claim.clone()))?;
        let mut scopes = BTreeSet::new();
        match claims.get("scope") {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
            _ => match claims.get("scp") {
                Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
                Some(Value::Array(items)) => {
                    scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            },
        }
        let limit = self
            .config
            .tier_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str)
            .and_then(|tier| self.tiers.get(tier).copied());
        Ok(Principal {
            name: format!("{}{name}", self.config.principal_prefix).into(),
            kind: PrincipalKind::Jwt,
            credential: key.id.clone(),
            limit,
            tools: None,
            scopes: Some(Arc::new(scopes)),
            token_id: claims
                .get("jti")
                .and_then(Value::as_str)
                .filter(|j| !j.is_empty() && j.len() <= 256)
                .map(Into::into),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "an-hmac-secret-that-is-long-enough-0123";

    fn config(dir: &Path) -> JwtConfig {
        let file = dir.join("hs.key");
        std::fs::write(&file, SECRET).unwrap();
        JwtConfig {
            issuer: "https://idp.test".into(),
            audience: vec!["https://edge.test/mcp".into()],
            keys: vec![JwtKeyConfig {
                kid: None,
                file,
                algorithms: vec![Algorithm::HS256],
            }],
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            jwks_refresh: Duration::from_secs(600),
            leeway: Duration::from_secs(0),
            principal_claim: "sub".into(),
            principal_prefix: "jwt:".into(),
            required_claims: vec![],
            tier_claim: None,
            max_token_bytes: 4096,
        }
    }

    fn verifier(dir: &Path) -> JwtVerifier {
        let c = config(dir);
        let keys = load_local_keys(&c).unwrap();
        JwtVerifier::new(c, keys, BTreeMap::new()).unwrap()
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[tokio::test]
    async fn good_token_gives_principal_and_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let v = verifier(dir.path());
        let t = token(
            json!({"sub": "ana", "iss": "https://idp.test", "aud": "https://edge.test/mcp", "exp": now() + 60, "scope": "docs:read mcp"}),
        );
        let p = v.verify(&t).await.unwrap();
        assert_eq!(p.name.as_ref(), "jwt:ana");
        assert!(p.scopes.unwrap().contains("docs:read"));
    }

    #[tokio::test]
    async fn claims_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let v = verifier(dir.path());
        let base = json!({"sub": "ana", "iss": "https://idp.test", "aud": "https://edge.test/mcp", "exp": now() + 60});
        let with = |k: &str, val: Value| {
            let mut c = base.clone();
            c[k] = val;
            token(c)
        };
        assert_eq!(
            v.verify(&with("exp", json!(now() - 10))).await.unwrap_err(),
            JwtRejection::Expired
        );
        assert_eq!(
            v.verify(&with("nbf", json!(now() + 600)))
                .await
                .unwrap_err(),
            JwtRejection::NotYetValid
        );
        assert_eq!(
            v.verify(&with("aud", json!("https://other/mcp")))
                .await
                .unwrap_err(),
            JwtRejection::WrongAudience
        );
        assert_eq!(
            v.verify(&with("iss", json!("https://evil")))
                .await
                .unwrap_err(),
            JwtRejection::WrongIssuer
        );
        let mut no_sub = base.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(matches!(
            v.verify(&token(no_sub)).await.unwrap_err(),
            JwtRejection::MissingClaim(_)
        ));
        assert_eq!(
            v.verify("not.a.jwt").await.unwrap_err(),
            JwtRejection::Malformed
        );
        assert_eq!(
            v.verify(&"a".repeat(5000)).await.unwrap_err(),
            JwtRejection::TooLarge
        );
    }

    #[tokio::test]
    async fn critical_header_extensions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = verifier(dir.path());
        let claims = json!({"sub": "ana", "iss": "https://idp.test", "aud": "https://edge.test/mcp", "exp": now() + 60});
        for crit in [vec!["exp".to_string()], vec!["b64".into()], vec![]] {
            let mut header = Header::new(Algorithm::HS256);
            header.crit = Some(crit.clone());
            if crit.first().is_some_and(|c| c == "exp") {
                header.extras.insert("exp", now() + 60);
            }
            let t = encode(
                &header,
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap();
            assert_eq!(
                v.verify(&t).await.unwrap_err(),
                JwtRejection::UnsupportedCritical,
                "{crit:?}"
            );
        }
    }

    #[test]
    fn pem_configured_as_hmac_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pub.pem");
        std::fs::write(
            &file,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let err = load_key_file(&JwtKeyConfig {
            kid: None,
            file,
            algorithms: vec![Algorithm::HS256],
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("HMAC"), "{err}");
    }
}
