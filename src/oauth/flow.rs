//! The authorization endpoint and the pages behind it: `GET /authorize` checks the
//! request and shows the sign-in page; `POST /authorize/key` signs the person in with
//! their team API key and shows the consent page; `POST /authorize/consent` sends the
//! browser back to the client with a code (or `access_denied`).
//!
//! Nothing is stored between the steps: the checked request, then the request plus
//! the person, travel in the forms sealed with the cluster key ring (any replica can
//! take the next step). Each form also carries a CSRF token: an HMAC of the sealed
//! value and a random cookie set on the first page, so a form posted from another
//! site (without the cookie) is refused.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::OAuth;
use super::clients::Client;
use super::grants::{CODE_TTL_SECS, Code, Person, random_id};
use super::pages::{self, Asking};
use crate::auth::edge_token::now_secs;

const SEAL_PENDING: &[u8] = b"oauth pending v1";
const SEAL_CONSENT: &[u8] = b"oauth consent v1";
const SEAL_IDP_STATE: &[u8] = b"oauth idp state v1";
/// How long a person may take from the sign-in page to their decision.
const PENDING_TTL_SECS: u64 = 600;
const COOKIE: &str = "mcp_edge_oauth";
const MAX_SCOPE_LEN: usize = 1000;

/// `GET /authorize`'s parameters.
#[derive(Deserialize)]
pub struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// A checked authorization request, waiting for the person.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    client_name: String,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    scope: String,
    resource: String,
    exp: u64,
}

/// A pending request and who signed in, waiting for consent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Consenting {
    pending: Pending,
    person: Person,
    exp: u64,
}

fn host_of(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| uri.chars().take(100).collect())
}

/// The client's redirect URI with the response parameters added (RFC 9207's `iss`
/// always: the client can tell which server answered).
fn redirect_back(
    oauth: &OAuth,
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Cannot return to the application",
            "its redirect URI is not a URL",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(state) = state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", oauth.issuer());
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_back(oauth: &OAuth, pending: &Pending, code: &str, description: &str) -> Response {
    crate::metrics::oauth_refused("authorize", static_code(code));
    redirect_back(
        oauth,
        &pending.redirect_uri,
        &[("error", code), ("error_description", description)],
        pending.state.as_deref(),
    )
}

fn static_code(code: &str) -> &'static str {
    match code {
        "invalid_request" => "invalid_request",
        "unsupported_response_type" => "unsupported_response_type",
        "invalid_target" => "invalid_target",
        "access_denied" => "access_denied",
        "invalid_scope" => "invalid_scope",
        _ => "other",
    }
}

/// The browser's CSRF cookie, if it sent one.
fn cookie_of(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty() && value.len() <= 64).then(|| value.to_owned())
        })
}

fn csrf_token(oauth: &OAuth, cookie: &str, sealed: &str) -> String {
    oauth
        .cluster
        .ring()
        .sign(format!("csrf|{cookie}|{sealed}").as_bytes())
}

fn csrf_ok(oauth: &OAuth, parts: &Parts, sealed: &str, presented: &str) -> bool {
    match cookie_of(parts) {
        Some(cookie) => oauth
            .cluster
            .ring()
            .verify(format!("csrf|{cookie}|{sealed}").as_bytes(), presented),
        None => false,
    }
}

fn set_cookie(oauth: &OAuth, response: &mut Response, cookie: &str) {
    let secure = if oauth.https { "; Secure" } else { "" };
    let value = format!(
        "{COOKIE}={cookie}; Path=/authorize; HttpOnly; SameSite=Lax; Max-Age={PENDING_TTL_SECS}{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn new_cookie() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn seal<T: Serialize>(oauth: &OAuth, purpose: &[u8], value: &T) -> String {
    let plain = serde_json::to_vec(value).expect("serializable");
    oauth.cluster.ring().seal_for(purpose, &plain)
}

fn open<T: for<'de> Deserialize<'de>>(oauth: &OAuth, purpose: &[u8], sealed: &str) -> Option<T> {
    let plain = oauth.cluster.ring().open_for(purpose, sealed, 16 * 1024)?;
    serde_json::from_slice(&plain).ok()
}

/// Something a sealed value can say it is good until.
trait Expiring {
    fn exp(&self) -> u64;
}

impl Expiring for Pending {
    fn exp(&self) -> u64 {
        self.exp
    }
}

impl Expiring for Consenting {
    fn exp(&self) -> u64 {
        self.exp
    }
}

/// The sealed value a form posted back, once its CSRF token matches this browser's
/// cookie and it has not expired; else the page that says why.
fn posted<T: for<'de> Deserialize<'de> + Expiring>(
    oauth: &OAuth,
    parts: &Parts,
    purpose: &[u8],
    sealed: &str,
    csrf: &str,
) -> Result<T, NotPosted> {
    if !csrf_ok(oauth, parts, sealed, csrf) {
        return Err(NotPosted::Forged);
    }
    open::<T>(oauth, purpose, sealed)
        .filter(|v| v.exp() > now_secs())
        .ok_or(NotPosted::Expired)
}

/// Why [`posted`] found no good value.
enum NotPosted {
    Forged,
    Expired,
}

impl NotPosted {
    fn page(self) -> Response {
        match self {
            NotPosted::Forged => forged_page(),
            NotPosted::Expired => expired_page(),
        }
    }
}

fn expired_page() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "This sign-in has expired",
        "The sign-in took too long or its page was changed. Start again from the application.",
    )
}

fn forged_page() -> Response {
    crate::metrics::oauth_refused("authorize", "csrf");
    pages::error(
        StatusCode::FORBIDDEN,
        "This form was not sent from this server's page",
        "The request did not come with this server's own form token (possibly another site sent it). Start again from the application.",
    )
}

/// `GET /authorize`.
pub async fn authorize(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    // Until the client and its redirect URI are trusted, errors are shown here:
    // redirecting them would make this an open redirector.
    let Some(client_id) = q.client_id.as_deref().filter(|c| !c.is_empty()) else {
        crate::metrics::oauth_refused("authorize", "invalid_request");
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in request is incomplete",
            "client_id is missing.",
        );
    };
    let client: Client = match oauth.clients.find(client_id).await {
        Ok(c) => c,
        Err(e) => {
            crate::metrics::oauth_refused("authorize", "invalid_client");
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                &e.description,
            );
        }
    };
    let redirect_uri = match q.redirect_uri.as_deref() {
        Some(uri) if client.redirect_allowed(uri) => uri.to_owned(),
        Some(_) => {
            crate::metrics::oauth_refused("authorize", "invalid_redirect_uri");
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Unexpected return address",
                "The redirect_uri is not one this application registered, so the sign-in cannot continue.",
            );
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            crate::metrics::oauth_refused("authorize", "invalid_request");
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in request is incomplete",
                "redirect_uri is missing.",
            );
        }
    };
    let mut pending = Pending {
        client_id: client.client_id.clone(),
        client_name: client.name.clone(),
        redirect_uri,
        state: q.state.clone(),
        challenge: String::new(),
        scope: q.scope.clone().unwrap_or_default(),
        resource: oauth.resources[0].clone(),
        exp: now_secs() + PENDING_TTL_SECS,
    };
    if q.response_type.as_deref() != Some("code") {
        return error_back(
            &oauth,
            &pending,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    match (
        q.code_challenge.as_deref(),
        q.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => {
            pending.challenge = c.to_owned()
        }
        (None, _) => {
            return error_back(
                &oauth,
                &pending,
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            );
        }
        (Some(_), Some("S256")) => {
            return error_back(
                &oauth,
                &pending,
                "invalid_request",
                "code_challenge must be 43-128 characters",
            );
        }
        (Some(_), _) => {
            return error_back(
                &oauth,
                &pending,
                "invalid_request",
                "code_challenge_method must be S256 (plain is refused)",
            );
        }
    }
    if let Some(resource) = &q.resource {
        if !oauth.resources.contains(resource) {
            return error_back(
                &oauth,
                &pending,
                "invalid_target",
                "resource is not this server's MCP endpoint",
            );
        }
        pending.resource = resource.clone();
    }
    if pending.scope.len() > MAX_SCOPE_LEN {
        return error_back(&oauth, &pending, "invalid_scope", "scope is too long");
    }
    let sealed = seal(&oauth, SEAL_PENDING, &pending);
    let cookie = cookie_of(&parts).unwrap_or_else(new_cookie);
    let csrf = csrf_token(&oauth, &cookie, &sealed);
    let asking = Asking {
        client_name: &pending.client_name,
        redirect_host: &host_of(&pending.redirect_uri),
        scope: &pending.scope,
    };
    let mut response = pages::sign_in(&asking, &oauth.methods(), &sealed, &csrf, None);
    set_cookie(&oauth, &mut response, &cookie);
    response
}

#[derive(Deserialize)]
pub struct KeyForm {
    request: String,
    csrf: String,
    api_key: String,
}

/// `POST /authorize/key`: the person's team API key.
pub async fn sign_in_with_key(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    Form(form): Form<KeyForm>,
) -> Response {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    let pending = match posted::<Pending>(&oauth, &parts, SEAL_PENDING, &form.request, &form.csrf) {
        Ok(pending) => pending,
        Err(refused) => return refused.page(),
    };
    let asking = Asking {
        client_name: &pending.client_name,
        redirect_host: &host_of(&pending.redirect_uri),
        scope: &pending.scope,
    };
    if !oauth.config.api_key_sign_in {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Sign-in with an API key is off",
            "Ask whoever runs this server how to sign in.",
        );
    }
    if let Some(decision) = oauth.limits.failed_auth_lockout(ip) {
        crate::metrics::oauth_sign_in("api_key", "locked_out");
        let wait = decision.retry_after.unwrap_or_default().as_secs().max(1);
        let mut response = pages::sign_in(
            &asking,
            &oauth.methods(),
            &form.request,
            &form.csrf,
            Some(&format!(
                "Too many failed sign-ins from your address. Try again in {wait} s."
            )),
        );
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return response;
    }
    let key = SecretString::from(form.api_key.trim().to_owned());
    let Some(principal) = oauth.auth.verify_key(&key) else {
        oauth.limits.record_failed_auth(ip).await;
        crate::metrics::oauth_sign_in("api_key", "failed");
        crate::metrics::auth_failure("invalid_key");
        oauth.audit(
            "oauth/sign_in",
            &pending.client_id,
            None,
            None,
            "refused",
            Some("invalid_key"),
            ip,
            401,
        );
        tracing::info!(client = %pending.client_id, %ip, "OAuth sign-in refused: not a valid API key");
        return pages::sign_in(
            &asking,
            &oauth.methods(),
            &form.request,
            &form.csrf,
            Some("That is not a valid API key."),
        );
    };
    crate::metrics::oauth_sign_in("api_key", "ok");
    oauth.audit(
        "oauth/sign_in",
        &pending.client_id,
        Some(&principal.name),
        Some(&principal.credential),
        "ok",
        None,
        ip,
        200,
    );
    tracing::info!(principal = %principal.name, client = %pending.client_id, "signed in with an API key");
    let Some(cookie) = cookie_of(&parts) else {
        return forged_page();
    };
    let person = Person {
        sub: principal.name.to_string(),
        via: "key".into(),
        cred: principal.credential.to_string(),
        groups: Vec::new(),
        tier: None,
        idp_refresh: None,
    };
    consent_page(&oauth, &cookie, pending, person)
}

/// The consent page for `person`, signed in for `pending`: the two sealed together in
/// its form, with the form's CSRF token for this browser's `cookie`.
fn consent_page(oauth: &OAuth, cookie: &str, pending: Pending, person: Person) -> Response {
    let consenting = Consenting {
        exp: pending.exp,
        pending,
        person,
    };
    let sealed = seal(oauth, SEAL_CONSENT, &consenting);
    let csrf = csrf_token(oauth, cookie, &sealed);
    let pending = &consenting.pending;
    let asking = Asking {
        client_name: &pending.client_name,
        redirect_host: &host_of(&pending.redirect_uri),
        scope: &pending.scope,
    };
    pages::consent(&asking, &consenting.person.sub, &sealed, &csrf)
}

#[derive(Deserialize)]
pub struct ConsentForm {
    consent: String,
    csrf: String,
    decision: String,
}

/// `POST /authorize/consent`: approve (a code) or deny.
pub async fn consent(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    Form(form): Form<ConsentForm>,
) -> Response {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    let consenting =
        match posted::<Consenting>(&oauth, &parts, SEAL_CONSENT, &form.consent, &form.csrf) {
            Ok(consenting) => consenting,
            Err(refused) => return refused.page(),
        };
    let pending = &consenting.pending;
    let person = &consenting.person;
    if form.decision != "approve" {
        let method = match person.via.as_str() {
            "oidc" => "oidc",
            _ => "api_key",
        };
        crate::metrics::oauth_sign_in(method, "denied");
        oauth.audit_person(
            "oauth/consent",
            &pending.client_id,
            person,
            "refused",
            Some("access_denied"),
            ip,
            303,
        );
        return error_back(
            &oauth,
            pending,
            "access_denied",
            "the person did not allow access",
        );
    }
    let code = Code {
        jti: random_id(),
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        challenge: pending.challenge.clone(),
        person: person.clone(),
        scope: pending.scope.clone(),
        resource: pending.resource.clone(),
        exp: now_secs() + CODE_TTL_SECS,
    };
    oauth.audit_person(
        "oauth/consent",
        &pending.client_id,
        person,
        "ok",
        None,
        ip,
        303,
    );
    let sealed = oauth.grants.seal_code(&code);
    redirect_back(
        &oauth,
        &pending.redirect_uri,
        &[("code", &sealed)],
        pending.state.as_deref(),
    )
}

impl OAuth {
    /// The sign-in methods configured.
    fn methods(&self) -> pages::Methods<'_> {
        pages::Methods {
            idp: self.idp.as_ref().map(|i| i.config.name.as_str()),
            api_key: self.config.api_key_sign_in,
        }
    }
}

/// What travels through the IdP in `state`: the waiting request, what the way back
/// needs (PKCE verifier, nonce), and a tag of this browser's cookie (the callback must
/// come back to the browser that left).
#[derive(Serialize, Deserialize)]
struct IdpState {
    pending: Pending,
    pkce: super::idp::Pkce,
    browser: String,
}

#[derive(Deserialize)]
pub struct IdpForm {
    request: String,
    csrf: String,
}

fn no_idp() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "No identity provider",
        "This server has no identity provider to sign in with.",
    )
}

/// `POST /authorize/idp`: off to the team's identity provider.
pub async fn sign_in_with_idp(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    Form(form): Form<IdpForm>,
) -> Response {
    let Some(idp) = &oauth.idp else {
        return no_idp();
    };
    let pending = match posted::<Pending>(&oauth, &parts, SEAL_PENDING, &form.request, &form.csrf) {
        Ok(pending) => pending,
        Err(refused) => return refused.page(),
    };
    let Some(cookie) = cookie_of(&parts) else {
        return forged_page();
    };
    // The IdP's URL is made before the state is sealed (the verifier and nonce go
    // into it): a placeholder stands for the state until then.
    let placeholder = random_id();
    let (url, pkce) = match idp.start(placeholder.clone()).await {
        Ok(started) => started,
        Err(e) => {
            crate::metrics::oauth_sign_in("oidc", "failed");
            tracing::warn!(error = %e, "cannot start a sign-in at the identity provider");
            return pages::error(
                StatusCode::BAD_GATEWAY,
                "The identity provider cannot be reached",
                &e.to_string(),
            );
        }
    };
    let state = IdpState {
        pending,
        pkce,
        browser: oauth
            .cluster
            .ring()
            .sign(format!("browser|{cookie}").as_bytes()),
    };
    let sealed = seal(&oauth, SEAL_IDP_STATE, &state);
    let mut response = Redirect::to(&url.replacen(&placeholder, &sealed, 1)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
pub struct IdpCallback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /authorize/idp/callback`: back from the identity provider.
pub async fn idp_callback(
    State(oauth): State<Arc<OAuth>>,
    parts: Parts,
    Query(q): Query<IdpCallback>,
) -> Response {
    let ip = crate::conn::client_ip_in(&parts.extensions);
    let Some(idp) = &oauth.idp else {
        return no_idp();
    };
    let Some(state) = q
        .state
        .as_deref()
        .and_then(|s| open::<IdpState>(&oauth, SEAL_IDP_STATE, s))
        .filter(|s| s.pending.exp > now_secs())
    else {
        return expired_page();
    };
    // The browser that comes back must be the one that left (login CSRF).
    let Some(cookie) = cookie_of(&parts).filter(|c| {
        oauth
            .cluster
            .ring()
            .verify(format!("browser|{c}").as_bytes(), &state.browser)
    }) else {
        return forged_page();
    };
    let pending = state.pending;
    if let Some(error) = q.error {
        crate::metrics::oauth_sign_in("oidc", "denied");
        let detail = q.error_description.unwrap_or_default();
        oauth.audit(
            "oauth/sign_in",
            &pending.client_id,
            None,
            None,
            "refused",
            Some("idp_refused"),
            ip,
            403,
        );
        return pages::error(
            StatusCode::FORBIDDEN,
            "The identity provider did not sign you in",
            &format!("{error} {detail}"),
        );
    }
    let Some(code) = q.code else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in did not finish",
            "The identity provider sent no code.",
        );
    };
    let admitted = match idp.finish(&code, &state.pkce).await {
        Ok(admitted) => admitted,
        Err(e) => {
            let (status, reason) = match &e {
                super::idp::IdpError::NotAdmitted(_) => (StatusCode::FORBIDDEN, "not_admitted"),
                super::idp::IdpError::Unreachable(_) => {
                    (StatusCode::BAD_GATEWAY, "idp_unreachable")
                }
                _ => (StatusCode::BAD_GATEWAY, "idp_refused"),
            };
            crate::metrics::oauth_sign_in("oidc", "failed");
            oauth.limits.record_failed_auth(ip).await;
            oauth.audit(
                "oauth/sign_in",
                &pending.client_id,
                None,
                None,
                "refused",
                Some(reason),
                ip,
                status.as_u16(),
            );
            tracing::info!(client = %pending.client_id, %ip, error = %e, "OAuth sign-in through the identity provider refused");
            return pages::error(status, "You cannot sign in here", &e.to_string());
        }
    };
    crate::metrics::oauth_sign_in("oidc", "ok");
    oauth.audit(
        "oauth/sign_in",
        &pending.client_id,
        Some(&admitted.principal),
        Some(&admitted.cred),
        "ok",
        None,
        ip,
        200,
    );
    tracing::info!(principal = %admitted.principal, client = %pending.client_id, "signed in through the identity provider");
    let person = Person {
        sub: admitted.principal,
        via: "oidc".into(),
        cred: admitted.cred,
        groups: admitted.groups,
        tier: admitted.tier,
        idp_refresh: admitted.refresh,
    };
    consent_page(&oauth, &cookie, pending, person)
}
