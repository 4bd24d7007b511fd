//! Several replicas, one service: sealed session ids and the peer hop.
//!
//! The edge hands out its own `Mcp-Session-Id` (and legacy `sessionId`), sealed with
//! the session key ring ([`seal`]): it names the replica that owns the session, the
//! inner (rmcp or legacy) session id, a digest of the principal and an expiry. Every
//! request carrying an id is opened here first: anything that does not open, has
//! expired or belongs to another principal is `404 session not found`; a session this
//! replica owns continues into rmcp with the inner id; any other is forwarded to the
//! owner's peer listener ([`peer`]) and its answer streamed back.
//!
//! The session registry and rmcp key sessions by the **inner** id; only the HTTP
//! boundary sees sealed ids.

pub mod peer;
pub mod seal;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use seal::{Claims, KeyRing, RingError};

use crate::auth::Principal;
use crate::config::Config;
use crate::error::EdgeError;
use crate::server::{AppState, SESSION_HEADER};
use crate::telemetry::RequestLog;

/// The legacy transport's message endpoint, whose session id is in the query.
const LEGACY_MESSAGES: &str = "/messages";

/// Sealing keys, this replica's peer address and the peer client.
pub struct Cluster {
    ring: ArcSwap<KeyRing>,
    /// `None`: a single replica (no peer listener); sealed ids carry an empty owner.
    advertise: Option<String>,
    id_ttl: Duration,
    client: Option<peer::PeerClient>,
}

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
        })
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

    fn is_local(&self, claims: &Claims) -> bool {
        claims.owner == self.advertise.as_deref().unwrap_or_default()
    }
}

/// Where a request's session lives, as decided by [`route`].
pub enum Routed {
    /// Served here; the header (or legacy query) now carries the inner id. Holds the
    /// sealed id as presented, to put back on the response.
    Local(Request, Option<Sealed>),
    /// Refused or forwarded: the response to send.
    Done(Response),
}

/// The sealed id a request presented and what it opened to.
pub struct Sealed {
    pub sealed: String,
    pub inner: String,
}

fn legacy_session(request: &Request) -> Option<String> {
    if request.uri().path() != LEGACY_MESSAGES {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        pair.strip_prefix("sessionId=")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    })
}

fn replace_legacy_session(request: &mut Request, inner: &str) {
    let query: Vec<String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .map(|pair| match pair.strip_prefix("sessionId=") {
            Some(_) => format!("sessionId={inner}"),
            None => pair.to_owned(),
        })
        .collect();
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = format!("{}?{}", request.uri().path(), query.join("&"))
        .parse()
        .ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// Open the session id of a request (header, or `sessionId` on `/messages`), then
/// refuse it, forward it to its owner, or rewrite it to the inner id.
pub async fn route(state: &AppState, principal: &Arc<Principal>, mut request: Request) -> Routed {
    let from_header = request
        .headers()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    let (sealed, in_query) = match from_header {
        Some(Ok(id)) => (id, false),
        Some(Err(_)) => return Routed::Done(EdgeError::SessionNotFound.into_response()),
        None => match legacy_session(&request) {
            Some(id) => (id, true),
            None => return Routed::Local(request, None),
        },
    };
    let cluster = &state.cluster;
    let Some(claims) = cluster.open(&sealed, principal) else {
        tracing::debug!(principal = %principal.name, "session id does not open (tampered, expired, unknown key or another principal's)");
        return Routed::Done(EdgeError::SessionNotFound.into_response());
    };
    if !cluster.is_local(&claims) {
        let response = match &cluster.client {
            Some(client) if !claims.owner.is_empty() && !peer::is_forwarded(&request) => {
                RequestLog::note(&request, |l| l.hop = Some(format!("to {}", claims.owner)));
                client
                    .forward(state, principal, &claims.owner, request)
                    .await
            }
            _ => EdgeError::SessionNotFound.into_response(),
        };
        return Routed::Done(response);
    }
    if in_query {
        replace_legacy_session(&mut request, &claims.inner);
    } else if let Ok(v) = HeaderValue::from_str(&claims.inner) {
        request.headers_mut().insert(SESSION_HEADER, v);
    }
    Routed::Local(
        request,
        Some(Sealed {
            sealed,
            inner: claims.inner,
        }),
    )
}

/// Put the sealed id on a response in place of rmcp's inner one (a new session from
/// `initialize`, or an echo of the request's own id).
pub fn seal_response(
    cluster: &Cluster,
    principal: &Principal,
    response: &mut Response,
    presented: Option<&Sealed>,
) {
    let Some(inner) = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return;
    };
    let sealed = match presented {
        Some(p) if p.inner == inner => p.sealed.clone(),
        _ => cluster.seal(&inner, principal),
    };
    if let Ok(v) = HeaderValue::from_str(&sealed) {
        response.headers_mut().insert(SESSION_HEADER, v);
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
    fn legacy_query_is_rewritten() {
        let mut request = Request::builder()
            .uri("/messages?x=1&sessionId=SEALED")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(legacy_session(&request).as_deref(), Some("SEALED"));
        replace_legacy_session(&mut request, "sse-abc");
        assert_eq!(request.uri(), "/messages?x=1&sessionId=sse-abc");
    }
}
