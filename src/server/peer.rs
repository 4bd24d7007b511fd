//! The HTTP side of the peer hop (the signing and the principal's wire form are in
//! [`crate::cluster::peer`]): forwarding a request to the replica that owns its
//! session, and checking a request that arrived that way.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::Method;

use super::access_log::{RequestLog, TrackedBody};
use super::error::EdgeError;
use super::request::{client_ip, host_name};
use super::state::AppState;
use crate::auth::Principal;
use crate::cluster::PeerEvent;
use crate::cluster::peer::{self, Forwarded, Outgoing, PeerClient};
use crate::host::HostName;

/// Send `request` to `owner`'s peer listener and stream its answer back; an
/// unreachable owner is `unreachable` (`404 session not found` for a session: clients
/// start a new one).
pub async fn forward(
    state: &AppState,
    client: &PeerClient,
    principal: &Principal,
    owner: &str,
    request: Request,
    unreachable: EdgeError,
) -> Response {
    let client_addr = client_ip(&request);
    let host = host_name(&request);
    let (mut parts, body) = request.into_parts();
    super::trace::carry_to_owner(&mut parts);
    let limit = state.config.server.max_body_bytes;
    // Bodies are at most `max_body_bytes` (JSON-RPC messages), so they are read
    // whole to be signed; responses, which may be endless streams, are not.
    let in_flight = (parts.method == Method::POST).then(|| state.in_flight.token());
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return EdgeError::PayloadTooLarge(limit).into_response(),
    };
    let outgoing = Outgoing {
        principal,
        owner,
        client_ip: client_addr,
        host: host.as_ref().map(HostName::as_str),
        parts,
        body,
    };
    match client.forward(&state.cluster.ring(), outgoing).await {
        Ok(response) => {
            state.cluster.saw_peer(owner, PeerEvent::Forwarded);
            match in_flight {
                Some(token) => response.map(|body| Body::new(TrackedBody::new(body, token))),
                None => response,
            }
        }
        Err(e) => {
            state
                .cluster
                .saw_peer(owner, PeerEvent::Unreachable(&e.to_string()));
            tracing::warn!(owner, error = %e, refusal = unreachable.reason(), "owner replica unreachable");
            unreachable.into_response()
        }
    }
}

/// The peer listener's first step: the HMAC and timestamp, then the principal and
/// client address the first replica saw. Anything else is 401.
pub async fn verified(
    state: &AppState,
    request: Request,
) -> Result<(Request, Arc<Principal>), EdgeError> {
    let (mut parts, body) = request.into_parts();
    let limit = state.config.server.max_body_bytes;
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| EdgeError::PayloadTooLarge(limit))?;
    let (principal, client) =
        peer::verify(&state.cluster.ring(), &parts, &body).map_err(|reason| {
            tracing::warn!(reason, "peer listener refused a request");
            EdgeError::PeerUnauthorized
        })?;
    peer::strip_peer_headers(&mut parts.headers);
    if let Some(axum::extract::ConnectInfo(from)) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        // The hop already decoded a body and a principal; one short string more.
        state
            .cluster
            .saw_peer(&from.ip().to_string(), PeerEvent::Received);
    }
    let principal = Arc::new(principal);
    parts
        .extensions
        .insert(crate::conn::ClientAddr(SocketAddr::new(client, 0)));
    parts.extensions.insert(principal.clone());
    parts.extensions.insert(state.policy.clone());
    parts.extensions.insert(Forwarded);
    let request = Request::from_parts(parts, Body::from(body));
    RequestLog::note(&request, |l| {
        l.principal = Some(principal.name.clone());
        l.hop = Some("from peer".to_owned());
    });
    Ok((request, principal))
}
