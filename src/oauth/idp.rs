//! Sign-in through the team's OpenID provider (`[auth.oauth.oidc]`): the edge is a
//! confidential OIDC client (discovery, authorization code + PKCE + nonce, ID token
//! validated by the `openidconnect` crate). The person's principal comes from a
//! configured claim; admission from allowed email domains and/or groups; groups map to
//! tiers (and act as scopes for `access.tool_scopes`). At each refresh of the edge's
//! tokens the IdP is asked again (its refresh token), so a person removed from a group
//! or disabled at the IdP loses access within one access-token lifetime. No DCR and no
//! `resource` support is needed at the IdP. This code runs on sign-in and refresh
//! only, never on the request path.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthPrompt, CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    TokenResponse,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::config::oauth::OidcConfig;

/// How long discovered provider metadata (and its keys) is used before it is fetched again.
const METADATA_FOR: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in or a re-check at the IdP failed. Never carries a secret or a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdpError {
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("auth.oauth.oidc.client_secret_file: {0}")]
    Secret(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("{0}")]
    NotAdmitted(String),
}

/// A person the IdP vouched for and the admission rules let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub principal: String,
    pub groups: Vec<String>,
    pub tier: Option<String>,
    /// `oidc:<digest>` of the IdP account (issuer and `sub`): safe to log.
    pub cred: String,
    /// The IdP's refresh token, when it gave one.
    pub refresh: Option<String>,
}

/// What the edge must remember across the round trip to the IdP (sealed in `state`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pkce {
    pub nonce: String,
    pub verifier: String,
}

/// An HTTP failure, as the `openidconnect` crate needs it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

pub struct Idp {
    pub config: OidcConfig,
    redirect_uri: String,
    http: reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

/// One request through our HTTP client (no redirects, bounded time).
async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpFailure> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpFailure(error_chain(&e)))?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpFailure(error_chain(&e)))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpFailure(e.to_string()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Idp {
    /// `edge_issuer` is the edge's own origin: the IdP sends the person back to
    /// `<edge_issuer>/authorize/idp/callback` (register that redirect URI at the IdP).
    pub fn new(config: OidcConfig, edge_issuer: &str) -> Result<Idp, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("auth.oauth.oidc.ca_file {}: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("auth.oauth.oidc.ca_file {}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Idp {
            redirect_uri: format!("{edge_issuer}/authorize/idp/callback"),
            http: builder
                .build()
                .map_err(|e| format!("cannot build the IdP HTTP client: {e}"))?,
            config,
            metadata: Mutex::new(None),
        })
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The provider's metadata and keys, discovered (and rediscovered hourly).
    async fn metadata(&self) -> Result<CoreProviderMetadata, IdpError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref()
            && at.elapsed() < METADATA_FOR
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| IdpError::Unreachable(format!("issuer: {e}")))?;
        let http = self.http.clone();
        let call = move |r| send(http.clone(), r);
        let metadata = CoreProviderMetadata::discover_async(issuer, &call)
            .await
            .map_err(|e| IdpError::Unreachable(format!("discovery: {}", error_chain(&e))))?;
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// Can the IdP be discovered now? (`check-config` and start: a warning, not fatal.)
    pub async fn probe(&self) -> Result<(), IdpError> {
        self.metadata().await.map(|_| ())
    }

    fn secret(&self) -> Result<ClientSecret, IdpError> {
        let text = std::fs::read_to_string(&self.config.client_secret_file).map_err(|e| {
            IdpError::Secret(format!("{}: {e}", self.config.client_secret_file.display()))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(IdpError::Secret(format!(
                "{} is empty",
                self.config.client_secret_file.display()
            )));
        }
        Ok(ClientSecret::new(secret.to_owned()))
    }

    /// Where to send the browser, with `state` (the edge's sealed request), and what
    /// to keep for the way back.
    pub async fn start(&self, state: String) -> Result<(String, Pkce), IdpError> {
        let metadata = self.metadata().await?;
        let offline = metadata
            .scopes_supported()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == "offline_access"));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret()?),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|e| IdpError::Refused(format!("redirect URI: {e}")))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = Nonce::new_random();
        let nonce_for_url = nonce.clone();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state.clone()),
                move || nonce_for_url.clone(),
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        if offline && !self.config.scopes.iter().any(|s| s == "offline_access") {
            // A refresh token lets the edge ask again at each refresh whether the
            // person is still admitted; most IdPs give one only with consent.
            request = request
                .add_scope(Scope::new("offline_access".into()))
                .add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, _, _) = request.url();
        Ok((
            url.to_string(),
            Pkce {
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
            },
        ))
    }

    /// The way back: trade the IdP's code, validate the ID token, admit the person.
    pub async fn finish(&self, code: &str, pkce: &Pkce) -> Result<Admitted, IdpError> {
        let metadata = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret()?),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|e| IdpError::Refused(format!("redirect URI: {e}")))?,
        );
        let http = self.http.clone();
        let call = move |r| send(http.clone(), r);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| IdpError::Refused(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce.verifier.clone()))
            .request_async(&call)
            .await
            .map_err(|e| IdpError::Refused(format!("code exchange: {}", error_chain(&e))))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| IdpError::Refused("no ID token in the answer".into()))?;
        let nonce = Nonce::new(pkce.nonce.clone());
        id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| IdpError::Refused(format!("ID token: {}", error_chain(&e))))?;
        let claims = payload(id_token)?;
        let mut admitted = self.admit(&claims)?;
        admitted.refresh = response.refresh_token().map(|r| r.secret().clone());
        Ok(admitted)
    }

    /// Ask the IdP again (its refresh token): is the person still admitted, with which
    /// groups? A new ID token is checked like the first; an answer without one keeps
    /// what was known (the IdP still accepted the person).
    pub async fn recheck(&self, refresh: &str, known: &Admitted) -> Result<Admitted, IdpError> {
        let metadata = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret()?),
        );
        let http = self.http.clone();
        let call = move |r| send(http.clone(), r);
        let token = RefreshToken::new(refresh.to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| IdpError::Refused(format!("no token endpoint: {e}")))?
            .request_async(&call)
            .await
            .map_err(|e| match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => IdpError::NotAdmitted(
                    format!("the identity provider ended the sign-in ({})", r.error()),
                ),
                _ => IdpError::Unreachable(error_chain(&e)),
            })?;
        let mut admitted = match response.id_token() {
            Some(id_token) => {
                id_token
                    .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| IdpError::Refused(format!("ID token: {}", error_chain(&e))))?;
                let admitted = self.admit(&payload(id_token)?)?;
                if admitted.cred != known.cred {
                    return Err(IdpError::Refused(
                        "the ID token names another account".into(),
                    ));
                }
                admitted
            }
            None => known.clone(),
        };
        admitted.refresh = Some(
            response
                .refresh_token()
                .map(|r| r.secret().clone())
                .unwrap_or_else(|| refresh.to_owned()),
        );
        Ok(admitted)
    }

    /// The admission rules on validated claims.
    pub fn admit(&self, claims: &Map<String, Value>) -> Result<Admitted, IdpError> {
        let c = &self.config;
        let principal = claims
            .get(&c.principal_claim)
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                IdpError::NotAdmitted(format!(
                    "the identity provider did not say who you are (no {:?} claim; auth.oauth.oidc.principal_claim)",
                    c.principal_claim
                ))
            })?
            .to_owned();
        if !c.allowed_domains.is_empty() {
            let email = claims
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let verified = claims.get("email_verified").and_then(Value::as_bool) != Some(false);
            let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
            if !verified || !domain.is_some_and(|d| c.allowed_domains.contains(&d)) {
                return Err(IdpError::NotAdmitted(format!(
                    "{email:?} is not a verified address of an allowed domain ({})",
                    c.allowed_domains.join(", ")
                )));
            }
        }
        let groups: Vec<String> = match claims.get(&c.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        if !c.allowed_groups.is_empty() && !groups.iter().any(|g| c.allowed_groups.contains(g)) {
            return Err(IdpError::NotAdmitted(format!(
                "{principal} is in none of the groups allowed here ({})",
                c.allowed_groups.join(", ")
            )));
        }
        let tier = groups.iter().find_map(|g| c.group_tiers.get(g).cloned());
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let digest = Sha256::digest(format!("{}\n{sub}", c.issuer).as_bytes());
        Ok(Admitted {
            principal,
            groups,
            tier,
            cred: format!("oidc:{}", &hex::encode(digest)[..12]),
            refresh: None,
        })
    }
}

/// The claims of an ID token whose signature and claims were just validated.
fn payload<T: serde::Serialize>(id_token: &T) -> Result<Map<String, Value>, IdpError> {
    let jwt = serde_json::to_value(id_token)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| IdpError::Refused("unreadable ID token".into()))?;
    let part = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| IdpError::Refused("unreadable ID token".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| IdpError::Refused("unreadable ID token".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| IdpError::Refused("unreadable ID token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp(domains: &[&str], groups: &[&str]) -> Idp {
        let config = OidcConfig {
            issuer: "https://idp.example.com".into(),
            client_id: "edge".into(),
            client_secret_file: "/run/secrets/idp".into(),
            name: "Example".into(),
            scopes: vec!["openid".into()],
            principal_claim: "email".into(),
            allowed_domains: domains.iter().map(|s| s.to_string()).collect(),
            groups_claim: "groups".into(),
            allowed_groups: groups.iter().map(|s| s.to_string()).collect(),
            group_tiers: [("gold-team".to_string(), "gold".to_string())].into(),
            ca_file: None,
        };
        Idp::new(config, "https://edge.example.com").unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn admission_by_domain_and_group_and_tiers_by_group() {
        let both = idp(&["example.com"], &["eng"]);
        let ok = both
            .admit(&claims(
                serde_json::json!({"sub": "1", "email": "a@Example.com",
                "email_verified": true, "groups": ["eng", "gold-team"]}),
            ))
            .unwrap();
        assert_eq!(ok.principal, "a@Example.com");
        assert_eq!(ok.tier.as_deref(), Some("gold"));
        assert!(ok.cred.starts_with("oidc:"));
        for (c, why) in [
            (
                serde_json::json!({"sub": "1", "email": "a@evil.com", "groups": ["eng"]}),
                "domain",
            ),
            (
                serde_json::json!({"sub": "1", "email": "a@example.com", "email_verified": false, "groups": ["eng"]}),
                "domain",
            ),
            (
                serde_json::json!({"sub": "1", "email": "a@example.com", "groups": ["sales"]}),
                "groups",
            ),
            (serde_json::json!({"sub": "1", "groups": ["eng"]}), "claim"),
        ] {
            let err = both.admit(&claims(c.clone())).unwrap_err().to_string();
            assert!(err.contains(why) || err.contains("allowed"), "{c}: {err}");
        }
        let open = idp(&[], &[]);
        assert!(
            open.admit(&claims(serde_json::json!({"sub": "1", "email": "x@y.z"})))
                .is_ok()
        );
    }
}
