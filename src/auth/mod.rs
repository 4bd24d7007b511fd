//! Who is calling: bearer credentials checked against the configured key set.

pub mod api_keys;

use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;
use secrecy::SecretString;

pub use api_keys::{ApiKeysError, KeyStore};

use crate::config::Rate;

/// An authenticated caller. Rate limits and session ownership are keyed by `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: Arc<str>,
    /// A per-principal rate and burst overriding the default.
    pub limit: Option<(Rate, NonZeroU32)>,
}

impl Principal {
    pub fn new(name: &str) -> Principal {
        Principal {
            name: name.into(),
            limit: None,
        }
    }

    /// The caller when auth is off (loopback only).
    pub fn anonymous() -> Principal {
        Principal::new("anonymous")
    }
}

/// Why a request was not authenticated; becomes a 401 challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing bearer token: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("malformed Authorization header: expected `Bearer <key>`")]
    Malformed,
    #[error("invalid or revoked API key")]
    InvalidKey,
}

impl AuthFailure {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::InvalidKey => "invalid_key",
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

/// The configured authentication. Key sets are swapped atomically on reload.
pub enum Authenticator {
    ApiKeys(ArcSwap<KeyStore>),
    None,
}

impl Authenticator {
    pub fn api_keys(store: KeyStore) -> Authenticator {
        Authenticator::ApiKeys(ArcSwap::from_pointee(store))
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, AuthFailure> {
        match self {
            Authenticator::None => Ok(Arc::new(Principal::anonymous())),
            Authenticator::ApiKeys(store) => {
                let token = bearer_token(headers)?;
                store.load().verify(&token).ok_or(AuthFailure::InvalidKey)
            }
        }
    }

    /// Publish a new, already validated key set.
    pub fn replace_keys(&self, store: KeyStore) {
        if let Authenticator::ApiKeys(current) = self {
            current.store(Arc::new(store));
        }
    }
}

/// A fresh random API key for the dev profile.
pub fn generate_key() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!("mcp-dev-{}", hex::encode(bytes)))
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
    fn generated_keys_are_long_and_distinct() {
        use secrecy::ExposeSecret;
        let a = generate_key();
        let b = generate_key();
        assert!(a.expose_secret().len() >= 40);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
