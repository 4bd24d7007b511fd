//! The peer hop: forwarding a request to the replica that owns its session, and the
//! peer listener that serves such requests.
//!
//! The first replica authenticated the client and applied its rate limit; it sends the
//! request on (without the client's `Authorization`) with headers naming the principal,
//! the client address and the request id, a timestamp and an HMAC-SHA256 (ring-derived
//! key) over method, path and query, sealed session id, those headers and the body's
//! SHA-256. The peer listener answers 401 to anything whose HMAC does not verify or
//! whose timestamp is more than 30 s off, and serves nothing but the MCP routes. It
//! re-opens the sealed id against the forwarded principal and serves the request into
//! the same rmcp service, without authenticating or rate-limiting again. Replays inside
//! the 30 s window are not detected (the hop is meant for a private network).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KeyRing;
use crate::auth::{Principal, PrincipalKind};
use crate::config::Rate;
use crate::mcp::SESSION_HEADER;

pub const H_PRINCIPAL: &str = "x-mcp-edge-peer-principal";
pub const H_CLIENT: &str = "x-mcp-edge-peer-client";
pub const H_TIME: &str = "x-mcp-edge-peer-time";
pub const H_SIG: &str = "x-mcp-edge-peer-signature";
const REQUEST_ID: &str = "x-request-id";
/// How far a forwarded request's timestamp may be from this replica's clock.
pub const MAX_SKEW_SECS: u64 = 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Marks a request that arrived over the peer hop (never forwarded again).
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

pub fn is_forwarded(request: &Request) -> bool {
    request.extensions().get::<Forwarded>().is_some()
}

/// What the owner needs to rebuild the [`Principal`] for tool policy and ownership.
#[derive(Debug, Serialize, Deserialize)]
struct WirePrincipal {
    name: String,
    kind: String,
    credential: String,
    limit: Option<(String, u32)>,
    tools: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    token_id: Option<String>,
}

impl WirePrincipal {
    fn from(p: &Principal) -> WirePrincipal {
        WirePrincipal {
            name: p.name.to_string(),
            kind: match p.kind {
                PrincipalKind::ApiKey => "api_key",
                PrincipalKind::Jwt => "jwt",
                PrincipalKind::Oidc => "oidc",
                PrincipalKind::Anonymous => "anonymous",
            }
            .to_owned(),
            credential: p.credential.to_string(),
            limit: p.limit.map(|(rate, burst)| (rate.to_string(), burst.get())),
            tools: p.tools.as_ref().map(|t| t.to_vec()),
            scopes: p.scopes.as_ref().map(|s| s.iter().cloned().collect()),
            token_id: p.token_id.as_deref().map(str::to_owned),
        }
    }

    fn into_principal(self) -> Option<Principal> {
        let kind = match self.kind.as_str() {
            "api_key" => PrincipalKind::ApiKey,
            "jwt" => PrincipalKind::Jwt,
            "oidc" => PrincipalKind::Oidc,
            "anonymous" => PrincipalKind::Anonymous,
            _ => return None,
        };
        let limit = match self.limit {
            Some((rate, burst)) => Some((Rate::parse(&rate).ok()?, NonZeroU32::new(burst)?)),
            None => None,
        };
        Some(Principal {
            name: self.name.into(),
            kind,
            credential: self.credential.into(),
            limit,
            tools: self.tools.map(Into::into),
            scopes: self
                .scopes
                .map(|s| Arc::new(s.into_iter().collect::<BTreeSet<_>>())),
            token_id: self.token_id.map(Into::into),
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The signed message: one field per line (header values and paths hold no newlines).
/// Public so tests and tools can build a peer request by hand.
pub fn signed_message(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let fields = [
        "mcp-edge-peer/1",
        method.as_str(),
        path_and_query,
        header_str(headers, SESSION_HEADER),
        header_str(headers, H_PRINCIPAL),
        header_str(headers, H_CLIENT),
        header_str(headers, REQUEST_ID),
        header_str(headers, H_TIME),
        &hex::encode(Sha256::digest(body)),
    ];
    fields.join("\n").into_bytes()
}

/// Request headers not passed on: hop-by-hop ones, the client's credential, and any
/// peer header a client might try to inject.
fn forwardable(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "authorization"
            | "cookie"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "content-length"
            | "host"
    ) && !name.as_str().starts_with("x-mcp-edge-peer-")
}

/// Pooled HTTP/1.1 connections to the other replicas' peer listeners.
pub struct PeerClient {
    http: reqwest::Client,
}

impl Default for PeerClient {
    fn default() -> Self {
        PeerClient::new()
    }
}

impl PeerClient {
    pub fn new() -> PeerClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("peer HTTP client");
        PeerClient { http }
    }

    /// Send a request to its session's owner and stream the answer back.
    pub async fn forward(
        &self,
        ring: &KeyRing,
        out: Outgoing<'_>,
    ) -> Result<Response, Unreachable> {
        let Outgoing {
            principal,
            owner,
            client_ip,
            host,
            parts,
            body,
        } = out;
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if forwardable(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(header::HOST, host);
        }
        let wire = serde_json::to_vec(&WirePrincipal::from(principal)).unwrap_or_default();
        let insert = |headers: &mut HeaderMap, name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        insert(&mut headers, H_PRINCIPAL, URL_SAFE_NO_PAD.encode(wire));
        insert(&mut headers, H_CLIENT, client_ip.to_string());
        insert(&mut headers, H_TIME, unix_now().to_string());
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let message = signed_message(&parts.method, path, &headers, &body);
        insert(&mut headers, H_SIG, ring.sign(&message));
        let url = format!("http://{owner}{path}");
        let upstream = self
            .http
            .request(parts.method.clone(), &url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|source| Unreachable {
                owner: owner.to_owned(),
                source: Some(source),
            })?;
        tracing::debug!(owner, status = %upstream.status(), "forwarded to the session owner");
        let mut response = Response::builder().status(upstream.status());
        for (name, value) in upstream.headers() {
            if !matches!(
                name.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "content-length"
            ) {
                response = response.header(name, value);
            }
        }
        let stream = upstream.bytes_stream().map_err(std::io::Error::other);
        response
            .body(Body::from_stream(stream))
            .map_err(|_| Unreachable {
                owner: owner.to_owned(),
                source: None,
            })
    }
}

/// A request on its way to the replica that owns its session.
pub struct Outgoing<'a> {
    pub principal: &'a Principal,
    pub owner: &'a str,
    /// The client address this replica saw (PROXY header / trusted `X-Forwarded-For`).
    pub client_ip: IpAddr,
    pub host: Option<&'a str>,
    pub parts: http::request::Parts,
    /// Read whole (bounded by `server.max_body_bytes`): it is signed.
    pub body: Bytes,
}

/// The session's owner could not be reached (or answered with nothing usable).
#[derive(Debug, thiserror::Error)]
#[error("session owner {owner} unreachable")]
pub struct Unreachable {
    pub owner: String,
    #[source]
    pub source: Option<reqwest::Error>,
}

/// Check a forwarded request's timestamp and HMAC, and rebuild the principal and the
/// client address the first replica saw. The error says why (for the log; the
/// answer is always 401).
pub fn verify(
    ring: &KeyRing,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<(Principal, IpAddr), &'static str> {
    if parts.headers.get(H_SIG).is_none() {
        return Err("no peer signature");
    }
    let Ok(sent) = header_str(&parts.headers, H_TIME).parse::<u64>() else {
        return Err("no peer timestamp");
    };
    if sent.abs_diff(unix_now()) > MAX_SKEW_SECS {
        return Err("peer timestamp outside the 30 s window");
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let message = signed_message(&parts.method, path, &parts.headers, body);
    if !ring.verify(&message, header_str(&parts.headers, H_SIG)) {
        return Err("bad peer signature");
    }
    let principal = URL_SAFE_NO_PAD
        .decode(header_str(&parts.headers, H_PRINCIPAL))
        .ok()
        .and_then(|b| serde_json::from_slice::<WirePrincipal>(&b).ok())
        .and_then(WirePrincipal::into_principal)
        .ok_or("unreadable forwarded principal")?;
    let client: IpAddr = header_str(&parts.headers, H_CLIENT)
        .parse()
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    Ok((principal, client))
}

/// Drop the peer headers of a verified request before it is served.
pub fn strip_peer_headers(headers: &mut HeaderMap) {
    for name in [H_PRINCIPAL, H_CLIENT, H_TIME, H_SIG] {
        headers.remove(name);
    }
}

/// Bind the peer listener (before anything is served, like the other listeners).
pub fn bind(addr: SocketAddr) -> Result<(SocketAddr, std::net::TcpListener), std::io::Error> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok((listener.local_addr()?, listener))
}

/// Serve the peer routes over plain HTTP (HTTP/1.1 or h2c).
pub fn serve(
    listener: std::net::TcpListener,
    app: Router,
    handle: axum_server::Handle<SocketAddr>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let server = axum_server::from_tcp(listener)?
        .acceptor(axum_server::accept::NoDelayAcceptor::new())
        .handle(handle);
    Ok(tokio::spawn(async move {
        if let Err(e) = server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
        {
            tracing::error!(error = %e, "peer listener stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_survives_the_wire() {
        let p = Principal {
            kind: PrincipalKind::Jwt,
            credential: "kid-1".into(),
            limit: Some((Rate::parse("60/min").unwrap(), NonZeroU32::new(3).unwrap())),
            tools: Some(vec!["echo".to_string(), "docs__*".to_string()].into()),
            scopes: Some(Arc::new(["a".to_string(), "b".to_string()].into())),
            ..Principal::new("alice")
        };
        let wire = serde_json::to_vec(&WirePrincipal::from(&p)).unwrap();
        let back = serde_json::from_slice::<WirePrincipal>(&wire)
            .unwrap()
            .into_principal()
            .unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn client_credentials_and_peer_headers_are_not_forwarded() {
        for h in [
            "authorization",
            "host",
            "x-mcp-edge-peer-signature",
            "connection",
        ] {
            assert!(!forwardable(&HeaderName::from_static(h)), "{h}");
        }
        for h in [
            "mcp-session-id",
            "accept",
            "x-request-id",
            "origin",
            "last-event-id",
        ] {
            assert!(forwardable(&HeaderName::from_static(h)), "{h}");
        }
    }
}
