//! Steps 2 and 3: the failed-auth lockout (per client IP), then the credential.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use http::request::Parts;

use super::access_log::RequestLog;
use super::error::EdgeError;
use super::request::client_ip_of;
use super::state::AppState;
use crate::auth::{AuthFailure, Principal, PrincipalKind};

/// The challenge for `request`: the one of its path, without the metadata URL on a
/// host that publishes no OAuth (`auth.oauth.key_only_hosts`).
pub fn challenge(state: &AppState, request: &Parts) -> super::Challenge {
    let challenge = state.challenge.for_path(request.uri.path());
    match &state.oauth {
        Some(oauth)
            if !oauth.config.key_only_hosts.is_empty()
                && super::request::host_name_of(request)
                    .is_some_and(|h| oauth.is_key_only_host(h.as_str())) =>
        {
            super::Challenge {
                resource_metadata: "".into(),
                ..challenge
            }
        }
        _ => challenge,
    }
}

/// No credential at all is not a guess: OAuth-aware clients probe without one on
/// every start. It gets its 401 (with the challenge), is never counted towards the
/// lockout, and is never hidden by it.
pub fn refuse_missing_credential(state: &AppState, request: &Parts) -> Result<(), EdgeError> {
    if state.auth.is_enabled() && !request.headers.contains_key(header::AUTHORIZATION) {
        RequestLog::note_in(&request.extensions, |l| {
            l.auth = Some(AuthFailure::Missing.reason())
        });
        return Err(EdgeError::Unauthorized(
            AuthFailure::Missing,
            challenge(state, request),
        ));
    }
    Ok(())
}

/// An address over its failed-auth budget is refused before its credential is checked.
pub fn refuse_locked_out(state: &AppState, request: &Parts, ip: IpAddr) -> Result<(), EdgeError> {
    match state.limits.failed_auth_lockout(ip) {
        Some(decision) => {
            RequestLog::note_in(&request.extensions, |l| l.auth = Some("locked_out"));
            Err(EdgeError::RateLimited(decision))
        }
        None => Ok(()),
    }
}

/// The API key or JWT (and the server-wide `auth.required_scopes` of a JWT); a
/// wrong credential counts towards the lockout.
pub async fn authenticate(
    state: &AppState,
    request: &Parts,
    ip: IpAddr,
) -> Result<Arc<Principal>, EdgeError> {
    let principal = match state.auth.authenticate(&request.headers).await {
        Ok(principal) => principal,
        Err(failure) => {
            RequestLog::note_in(&request.extensions, |l| l.auth = Some(failure.reason()));
            let decision = state.limits.record_failed_auth(ip).await;
            return Err(match decision.allowed {
                true => EdgeError::Unauthorized(failure, challenge(state, request)),
                false => EdgeError::RateLimited(decision),
            });
        }
    };
    RequestLog::note_in(&request.extensions, |l| {
        l.principal = Some(principal.name.clone());
        l.credential = Some(principal.credential.clone());
        l.token_id = principal.token_id.clone();
    });
    if principal.kind == PrincipalKind::Jwt
        && let Some(scopes) = &principal.scopes
    {
        let required = &state.config.auth.required_scopes;
        if required.iter().any(|s| !scopes.contains(s)) {
            RequestLog::note_in(&request.extensions, |l| l.auth = Some("insufficient_scope"));
            return Err(EdgeError::InsufficientScope {
                message: format!("this server needs scope(s) {}", required.join(" ")),
                scope: required.join(" "),
                challenge: challenge(state, request),
            });
        }
    }
    Ok(principal)
}

/// Steps 2–3 on their own, as a layer (`/metrics` on the main port).
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match check(&state, &parts).await {
        Ok(principal) => {
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Steps 2–3 in order.
pub async fn check(state: &AppState, request: &Parts) -> Result<Arc<Principal>, EdgeError> {
    let ip = client_ip_of(request);
    refuse_missing_credential(state, request)?;
    refuse_locked_out(state, request, ip)?;
    authenticate(state, request, ip).await
}
