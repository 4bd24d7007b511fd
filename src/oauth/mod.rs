//! The edge as the OAuth 2.1 authorization server of its own `/mcp` (`[auth.oauth]`),
//! so an MCP client that speaks only OAuth (ChatGPT, Claude.ai, Cursor) signs a
//! person in, and the principal that comes out is the one the rest of the edge
//! already knows (rate limits, tool rules, sessions, audit). See `README.md` here.
//!
//! The parts, leaves first: [`error`] (RFC 6749 errors), [`pages`] (the HTML a person
//! sees), [`clients`] (configured, dynamically registered and CIMD clients),
//! [`grants`] (codes and refresh tokens), [`flow`] (authorize → sign-in → consent),
//! [`token`] (the token, revocation and registration endpoints, metadata).
//! `server` only routes here ([`router`]); tokens are checked by `auth::edge_token`.

pub mod clients;
pub mod error;
mod flow;
pub mod grants;
pub mod idp;
pub mod pages;
mod token;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::auth::{Authenticator, EdgeTokens};
use crate::cluster::Cluster;
use crate::config::OAuthConfig;
use crate::ratelimit::RateLimits;
use crate::telemetry::audit::{Audit, Record};
pub use clients::Clients;
pub use error::OAuthError;
use grants::Grants;

/// Why the authorization server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OAuthSetupError {
    #[error("auth.oauth: {0}")]
    Clients(String),
    #[error("auth.oauth.oidc: {0}")]
    Idp(String),
}

/// Everything the endpoints share.
pub struct OAuth {
    pub config: Arc<OAuthConfig>,
    /// `/mcp` and the other protected paths' resource URIs; the first is the default.
    resources: Vec<String>,
    scopes_supported: Vec<String>,
    tokens: Arc<EdgeTokens>,
    auth: Arc<Authenticator>,
    cluster: Arc<Cluster>,
    limits: Arc<RateLimits>,
    audit: Arc<Audit>,
    clients: Clients,
    grants: Grants,
    /// Sign-in through the team's OpenID provider.
    idp: Option<idp::Idp>,
    /// Whether the edge is served over TLS (cookies are `Secure` then).
    https: bool,
}

/// What [`OAuth::new`] needs.
pub struct OAuthParts {
    pub config: OAuthConfig,
    pub resources: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub tokens: Arc<EdgeTokens>,
    pub auth: Arc<Authenticator>,
    pub cluster: Arc<Cluster>,
    pub limits: Arc<RateLimits>,
    pub audit: Arc<Audit>,
    pub https: bool,
    /// Shared state for every replica (used codes, refresh families, revocations).
    pub redis: Option<Arc<crate::ratelimit::redis::RedisStore>>,
}

impl OAuth {
    pub fn new(parts: OAuthParts) -> Result<Arc<OAuth>, OAuthSetupError> {
        let config = Arc::new(parts.config);
        let clients = Clients::new(config.clone(), parts.cluster.clone())
            .map_err(OAuthSetupError::Clients)?;
        let idp = match &config.oidc {
            Some(oidc) => {
                Some(idp::Idp::new(oidc.clone(), &config.issuer).map_err(OAuthSetupError::Idp)?)
            }
            None => None,
        };
        Ok(Arc::new(OAuth {
            idp,
            grants: Grants::new(parts.cluster.clone(), parts.redis.clone()),
            clients,
            config,
            resources: parts.resources,
            scopes_supported: parts.scopes_supported,
            tokens: parts.tokens,
            auth: parts.auth,
            cluster: parts.cluster,
            limits: parts.limits,
            audit: parts.audit,
            https: parts.https,
        }))
    }

    pub fn tokens(&self) -> Arc<EdgeTokens> {
        self.tokens.clone()
    }

    /// With Redis, learn every second which sign-ins another replica revoked, so
    /// their access tokens stop here too (revocation is local without Redis).
    pub fn follow_revocations(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let redis = self.grants.redis()?.clone();
        let tokens = self.tokens.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = crate::auth::edge_token::now_secs();
                if let Ok(revoked) = redis.revoked_families(now).await {
                    for (fam, until) in revoked {
                        if !tokens.is_revoked(&fam) {
                            tokens.revoke_family(&fam, until);
                        }
                    }
                }
            }
        }))
    }

    /// Discover the IdP once at start, so a wrong issuer shows in the log at once
    /// (never fatal: it is tried again at the next sign-in).
    pub fn probe_idp(self: &Arc<Self>) {
        let Some(idp) = &self.idp else { return };
        let issuer = idp.config.issuer.clone();
        let redirect = idp.redirect_uri().to_owned();
        let oauth = self.clone();
        tokio::spawn(async move {
            let Some(idp) = &oauth.idp else { return };
            match idp.probe().await {
                Ok(()) => {
                    tracing::info!(%issuer, redirect_uri = %redirect, "identity provider reachable (register that redirect URI there)")
                }
                Err(e) => {
                    tracing::warn!(%issuer, error = %e, "identity provider not reachable at start; sign-ins through it fail until it is")
                }
            }
        });
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Is `host` one on which nothing of OAuth is published?
    pub fn is_key_only_host(&self, host: &str) -> bool {
        self.config.key_only_hosts.iter().any(|h| h == host)
    }

    /// [`OAuth::audit`] for a signed-in person.
    #[allow(clippy::too_many_arguments)]
    fn audit_person(
        &self,
        method: &str,
        client_id: &str,
        person: &grants::Person,
        outcome: &'static str,
        reason: Option<&str>,
        ip: IpAddr,
        status: u16,
    ) {
        self.audit(
            method,
            client_id,
            Some(&person.sub),
            Some(&person.cred),
            outcome,
            reason,
            ip,
            status,
        );
    }

    /// One audit record for a sign-in, consent, revocation or refresh reuse.
    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        method: &str,
        client_id: &str,
        principal: Option<&str>,
        credential: Option<&str>,
        outcome: &'static str,
        reason: Option<&str>,
        ip: IpAddr,
        status: u16,
    ) {
        if !self.audit.enabled() {
            return;
        }
        self.audit.write(&Record {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            method: method.to_owned(),
            name: Some(client_id.chars().take(200).collect()),
            principal: principal.map(str::to_owned),
            credential: credential.map(str::to_owned),
            session_kind: "oauth",
            client: Some(ip.to_string()),
            outcome,
            reason: reason.map(str::to_owned),
            status,
            ..Record::default()
        });
    }
}

/// The authorization server's routes (none of them behind the `/mcp` chain: they are
/// how a person gets a credential in the first place).
pub fn router(oauth: Arc<OAuth>) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(token::metadata),
        )
        .route("/.well-known/openid-configuration", get(token::metadata))
        .route("/oauth/jwks", get(token::jwks))
        .route("/authorize", get(flow::authorize))
        .route("/authorize/key", post(flow::sign_in_with_key))
        .route("/authorize/consent", post(flow::consent))
        .route("/authorize/idp", post(flow::sign_in_with_idp))
        .route("/authorize/idp/callback", get(flow::idp_callback))
        .route("/token", post(token::token).options(token::preflight))
        .route("/register", post(token::register).options(token::preflight))
        .route("/revoke", post(token::revoke).options(token::preflight))
        .with_state(oauth)
}
