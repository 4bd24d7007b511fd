//! The endpoints clients call directly (no person in front): metadata (RFC 8414, and
//! the OpenID discovery path clients also probe), the JWKS, `POST /token` (code and
//! refresh grants), `POST /register` (RFC 7591) and `POST /revoke` (RFC 7009).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::OAuth;
use super::clients::RegistrationRequest;
use super::error::{OAuthError, no_store};
use super::grants::{Person, Refresh, RefreshRefusal, random_id};
use crate::auth::EdgeClaims;
use crate::auth::edge_token::now_secs;

/// Browser-based clients call these endpoints from other origins; nothing here uses
/// cookies, so any origin may (PKCE protects the code, not the origin).
fn cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

pub async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// `GET /.well-known/oauth-authorization-server` (and `openid-configuration`).
pub async fn metadata(State(oauth): State<Arc<OAuth>>) -> Response {
    let issuer = oauth.issuer();
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "jwks_uri": format!("{issuer}/oauth/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "client_id_metadata_document_supported": oauth.config.client_metadata_documents,
        "authorization_response_iss_parameter_supported": true,
        // For clients that read this document as OpenID discovery: the edge issues
        // access tokens, not ID tokens, but the fields their schemas require are here.
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    if oauth.config.registration {
        doc["registration_endpoint"] = Value::from(format!("{issuer}/register"));
    }
    if !oauth.scopes_supported.is_empty() {
        doc["scopes_supported"] = json!(oauth.scopes_supported);
    }
    let mut response = Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    cors(response)
}

pub async fn jwks(State(oauth): State<Arc<OAuth>>) -> Response {
    let mut response = Json(oauth.tokens.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    cors(response)
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
}

/// `POST /token`.
pub async fn token(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let answer = match form {
        Ok(Form(form)) => match form.grant_type.as_deref() {
            Some("authorization_code") => code_grant(&oauth, &parts, form).await,
            Some("refresh_token") => refresh_grant(&oauth, &parts, form).await,
            Some(_) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is missing")),
        },
        Err(e) => Err(OAuthError::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded: {e}"
        ))),
    };
    match answer {
        Ok(tokens) => {
            let mut response = Json(tokens).into_response();
            no_store(&mut response);
            cors(response)
        }
        Err(e) => {
            crate::metrics::oauth_refused("token", e.code);
            cors(e.into_response())
        }
    }
}

/// The client a public client names: in the form (or as HTTP Basic's user name).
fn client_id_of(parts: &Parts, form: &TokenForm) -> Option<String> {
    if let Some(id) = &form.client_id {
        return Some(id.clone());
    }
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next()?;
    let user = url::form_urlencoded::parse(format!("u={user}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(user)
}

fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Redis (the replicas' shared sign-in state) cannot be reached: retry later.
fn state_unavailable() -> OAuthError {
    OAuthError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the shared sign-in state (Redis) cannot be reached; try again shortly",
    )
}

/// Is the person still allowed in? (A removed key ends their access.)
fn still_admitted(oauth: &OAuth, person: &Person) -> bool {
    match person.via.as_str() {
        "key" => oauth.auth.key_by_credential(&person.cred).is_some(),
        // Just vouched for by the IdP (a code), or re-checked there (a refresh).
        "oidc" => oauth.idp.is_some(),
        _ => false,
    }
}

/// Ask the IdP again whether an `oidc` person is still admitted: their updated
/// groups and tier, or why not. Without an IdP refresh token the person must sign in
/// again (nothing to ask with).
async fn recheck_at_idp(oauth: &OAuth, person: &Person) -> Result<Person, OAuthError> {
    let Some(idp) = &oauth.idp else {
        return Err(OAuthError::invalid_grant(
            "sign-in through the identity provider is off now: sign in again",
        ));
    };
    let Some(idp_refresh) = &person.idp_refresh else {
        return Err(OAuthError::invalid_grant(
            "the identity provider gave no refresh token, so it cannot be asked again: sign in again",
        ));
    };
    let known = super::idp::Admitted {
        principal: person.sub.clone(),
        groups: person.groups.clone(),
        tier: person.tier.clone(),
        cred: person.cred.clone(),
        refresh: None,
    };
    match idp.recheck(idp_refresh, &known).await {
        Ok(admitted) if admitted.principal == person.sub => Ok(Person {
            groups: admitted.groups,
            tier: admitted.tier,
            idp_refresh: admitted.refresh,
            ..person.clone()
        }),
        Ok(_) => Err(OAuthError::invalid_grant(
            "the identity provider now names another principal: sign in again",
        )),
        Err(super::idp::IdpError::Unreachable(why)) => Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            format!("the identity provider cannot be reached; try again later ({why})"),
        )),
        Err(e) => Err(OAuthError::invalid_grant(format!("{e}: sign in again"))),
    }
}

fn issue(oauth: &OAuth, refresh: &Refresh, refresh_token: String) -> Value {
    let now = now_secs();
    let ttl = oauth.config.access_token_ttl.as_secs();
    let claims = EdgeClaims {
        iss: oauth.issuer().to_owned(),
        sub: refresh.person.sub.clone(),
        aud: refresh.resource.clone(),
        exp: now + ttl,
        iat: now,
        jti: random_id(),
        client_id: refresh.client_id.clone(),
        scope: refresh.scope.clone(),
        fam: refresh.fam.clone(),
        via: refresh.person.via.clone(),
        cred: refresh.person.cred.clone(),
        grp: refresh.person.groups.clone(),
        tier: refresh.person.tier.clone(),
    };
    let mut answer = json!({
        "access_token": oauth.tokens.sign(&claims),
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": refresh_token,
    });
    if !refresh.scope.is_empty() {
        answer["scope"] = Value::from(refresh.scope.clone());
    }
    answer
}

/// End a family everywhere this replica looks: its refresh tokens and, at once, its
/// access tokens.
async fn end_family(oauth: &OAuth, fam: &str, refresh_exp: u64) {
    let access_until = now_secs() + oauth.config.access_token_ttl.as_secs() + 60;
    oauth.tokens.revoke_family(fam, access_until);
    oauth
        .grants
        .revoke_family(fam, refresh_exp, access_until)
        .await;
}

async fn code_grant(oauth: &OAuth, parts: &Parts, form: TokenForm) -> Result<Value, OAuthError> {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    let sealed = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let code = oauth
        .grants
        .open_code(sealed)
        .ok_or_else(|| OAuthError::invalid_grant("the code is not valid"))?;
    if code.exp <= now_secs() {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    let client_id = client_id_of(parts, &form)
        .ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
    if client_id != code.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the one the code was issued for",
        ));
    }
    let verifier = form
        .code_verifier
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is missing (PKCE)"))?;
    if !(43..=128).contains(&verifier.len()) || !pkce_matches(verifier, &code.challenge) {
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    if let Some(resource) = &form.resource
        && *resource != code.resource
    {
        return Err(OAuthError::invalid_target(
            "resource differs from the one the code was issued for",
        ));
    }
    let first_use = oauth
        .grants
        .use_code(&code)
        .await
        .map_err(|_| state_unavailable())?;
    if !first_use {
        // RFC 6749 §4.1.2: a replayed code revokes what was issued with it.
        end_family(
            oauth,
            &code.jti,
            now_secs() + oauth.config.refresh_token_ttl.as_secs(),
        )
        .await;
        crate::metrics::oauth_refused("token", "code_replay");
        oauth.audit_person(
            "oauth/code_replay",
            &code.client_id,
            &code.person,
            "refused",
            Some("code_replay"),
            ip,
            400,
        );
        tracing::warn!(client = %code.client_id, principal = %code.person.sub, "an authorization code was used twice; its tokens are revoked");
        return Err(OAuthError::invalid_grant(
            "the code was already used; the tokens issued with it are revoked",
        ));
    }
    if !still_admitted(oauth, &code.person) {
        return Err(OAuthError::invalid_grant(
            "the credential this sign-in used is no longer valid",
        ));
    }
    let refresh = Refresh {
        fam: code.jti.clone(),
        generation: 0,
        client_id: code.client_id.clone(),
        person: code.person.clone(),
        scope: code.scope.clone(),
        resource: code.resource.clone(),
        exp: now_secs() + oauth.config.refresh_token_ttl.as_secs(),
    };
    let refresh_token = oauth
        .grants
        .start_family(&refresh)
        .await
        .map_err(|_| state_unavailable())?;
    crate::metrics::oauth_token("authorization_code");
    Ok(issue(oauth, &refresh, refresh_token))
}

async fn refresh_grant(oauth: &OAuth, parts: &Parts, form: TokenForm) -> Result<Value, OAuthError> {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    let sealed = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let client_id = client_id_of(parts, &form)
        .ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
    // The client must be the one the token was issued to before anything changes.
    if let Some(opened) = oauth.grants.open_refresh(sealed)
        && opened.client_id != client_id
    {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    // An IdP sign-in is checked at the IdP first: if it cannot answer, nothing changes
    // and the client may retry with the same token.
    let rechecked = match oauth.grants.peek(sealed).await {
        Ok(current) if current.person.via == "oidc" => {
            match recheck_at_idp(oauth, &current.person).await {
                Ok(person) => Some(person),
                Err(e) if e.code == "temporarily_unavailable" => return Err(e),
                Err(e) => {
                    end_family(oauth, &current.fam, current.exp).await;
                    oauth.audit_person(
                        "oauth/revoke",
                        &current.client_id,
                        &current.person,
                        "ok",
                        Some("not_admitted"),
                        ip,
                        400,
                    );
                    return Err(e);
                }
            }
        }
        Ok(_) => None,
        Err(refused) => return Err(refresh_refused(oauth, refused, ip).await),
    };
    let (refresh, next) = match oauth.grants.rotate(sealed).await {
        Ok((refresh, next)) => match rechecked {
            Some(person) => {
                let refresh = Refresh { person, ..refresh };
                let next = oauth.grants.reseal(&refresh);
                (refresh, next)
            }
            None => (refresh, next),
        },
        Err(refused) => return Err(refresh_refused(oauth, refused, ip).await),
    };
    if let Some(resource) = &form.resource
        && *resource != refresh.resource
    {
        return Err(OAuthError::invalid_target(
            "resource differs from the one the token was issued for",
        ));
    }
    if !still_admitted(oauth, &refresh.person) {
        end_family(oauth, &refresh.fam, refresh.exp).await;
        oauth.audit_person(
            "oauth/revoke",
            &refresh.client_id,
            &refresh.person,
            "ok",
            Some("credential_gone"),
            ip,
            400,
        );
        return Err(OAuthError::invalid_grant(
            "the credential this sign-in used is no longer valid: sign in again",
        ));
    }
    crate::metrics::oauth_token("refresh_token");
    Ok(issue(oauth, &refresh, next))
}

/// The error for a refused refresh token; a reused one revokes its family.
async fn refresh_refused(
    oauth: &OAuth,
    (refusal, opened): super::grants::Refused,
    ip: std::net::IpAddr,
) -> OAuthError {
    match refusal {
        RefreshRefusal::Invalid => {
            OAuthError::invalid_grant("the refresh token is not valid or has expired")
        }
        RefreshRefusal::Unavailable => state_unavailable(),
        RefreshRefusal::UnknownFamily => OAuthError::invalid_grant(
            "the refresh token is not known here (the server restarted): sign in again",
        ),
        RefreshRefusal::Revoked => {
            OAuthError::invalid_grant("the refresh token was revoked: sign in again")
        }
        RefreshRefusal::Reused => {
            if let Some(opened) = opened {
                end_family(oauth, &opened.fam, opened.exp).await;
                oauth.audit_person(
                    "oauth/refresh_reuse",
                    &opened.client_id,
                    &opened.person,
                    "refused",
                    Some("refresh_reuse"),
                    ip,
                    400,
                );
                tracing::warn!(client = %opened.client_id, principal = %opened.person.sub, "a refresh token was used twice; its family is revoked");
            }
            crate::metrics::oauth_refused("token", "refresh_reuse");
            OAuthError::invalid_grant(
                "the refresh token was already used; every token of this sign-in is revoked",
            )
        }
    }
}

/// `POST /register`.
pub async fn register(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    body: Result<Json<RegistrationRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    let answer = match body {
        Ok(Json(request)) => oauth.clients.register(ip, request),
        Err(e) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            format!(
                "the body must be a JSON client registration: {}",
                e.body_text()
            ),
        )),
    };
    match answer {
        Ok(doc) => {
            let mut response = (StatusCode::CREATED, Json(doc)).into_response();
            no_store(&mut response);
            cors(response)
        }
        Err(e) => {
            crate::metrics::oauth_refused("register", e.code);
            cors(e.into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    token: Option<String>,
}

/// `POST /revoke`: a refresh or access token ends its whole family at once. Always
/// 200 for a token that is not (or no longer) valid (RFC 7009 §2.2).
pub async fn revoke_endpoint(oauth: &OAuth, parts: &Parts, token: &str) {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    if let Some(refresh) = oauth.grants.open_refresh(token) {
        end_family(oauth, &refresh.fam, refresh.exp).await;
        oauth.audit_person(
            "oauth/revoke",
            &refresh.client_id,
            &refresh.person,
            "ok",
            None,
            ip,
            200,
        );
        return;
    }
    if oauth.tokens.is_ours(token)
        && let Ok(claims) = oauth.tokens.verify(token, &oauth.resources)
    {
        end_family(
            oauth,
            &claims.fam,
            now_secs() + oauth.config.refresh_token_ttl.as_secs(),
        )
        .await;
        oauth.audit(
            "oauth/revoke",
            &claims.client_id,
            Some(&claims.sub),
            Some(&claims.cred),
            "ok",
            None,
            ip,
            200,
        );
    }
}

pub async fn revoke(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    form: Result<Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(RevokeForm { token: Some(token) })) = form else {
        crate::metrics::oauth_refused("revoke", "invalid_request");
        return cors(OAuthError::invalid_request("token is missing").into_response());
    };
    revoke_endpoint(&oauth, &parts, &token).await;
    let mut response = StatusCode::OK.into_response();
    no_store(&mut response);
    cors(response)
}
