//! `[auth.oauth]`: the edge as the OAuth 2.1 authorization server of its own `/mcp`,
//! so clients that speak only OAuth (ChatGPT, Claude.ai) sign a person in.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Errors, Rate, RawConfig, ServerConfig, duration, path_of, ser_duration};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub enabled: Option<bool>,
    pub signing_key_file: Option<String>,
    pub access_token_ttl: Option<String>,
    pub refresh_token_ttl: Option<String>,
    pub api_key_sign_in: Option<bool>,
    pub registration: Option<bool>,
    pub registration_rate: Option<String>,
    pub client_metadata_documents: Option<bool>,
    pub metadata_allow_private: Option<bool>,
    pub metadata_ca_file: Option<String>,
    pub key_only_hosts: Option<Vec<String>>,
    pub clients: Option<Vec<RawOAuthClient>>,
    #[serde(default)]
    pub oidc: RawOidc,
}

/// `[auth.oauth.oidc]`: the team's OpenID provider, where the person signs in.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub principal_claim: Option<String>,
    pub allowed_domains: Option<Vec<String>>,
    pub groups_claim: Option<String>,
    pub allowed_groups: Option<Vec<String>>,
    pub group_tiers: Option<std::collections::BTreeMap<String, String>>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    /// Read at each sign-in (rotated by rewriting the file).
    pub client_secret_file: PathBuf,
    /// What the sign-in button says ("Sign in with <name>").
    pub name: String,
    pub scopes: Vec<String>,
    /// The claim naming the principal (`email`, `preferred_username`, `sub`).
    pub principal_claim: String,
    /// Admitted email domains (the `email` claim, verified); empty: any.
    pub allowed_domains: Vec<String>,
    pub groups_claim: String,
    /// Admitted groups (any one); empty: any.
    pub allowed_groups: Vec<String>,
    /// Group → `[rate_limit.tiers]` entry (the first group listed that matches wins).
    pub group_tiers: std::collections::BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
}

/// One `[[auth.oauth.clients]]` entry: a client registered by the operator.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthClient {
    pub client_id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthClientConfig {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthConfig {
    /// The authorization server's issuer: the origin of `auth.resource`.
    pub issuer: String,
    /// PKCS#8 P-256 keys (PEM); the first signs. `None`: one random key per process.
    pub signing_key_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub access_token_ttl: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub refresh_token_ttl: Duration,
    /// The person signs in by pasting their team API key.
    pub api_key_sign_in: bool,
    /// Dynamic client registration (RFC 7591) for public clients.
    pub registration: bool,
    /// Registrations per client address.
    pub registration_rate: Rate,
    /// Client ID metadata documents: an HTTPS `client_id` the edge fetches.
    pub client_metadata_documents: bool,
    /// Fetch metadata documents from loopback and private addresses (tests, labs).
    pub metadata_allow_private: bool,
    pub metadata_ca_file: Option<PathBuf>,
    /// Hosts on which nothing of OAuth is published (discovery answers 404), for
    /// clients that would drop their API key as soon as discovery answers.
    pub key_only_hosts: Vec<String>,
    pub clients: Vec<OAuthClientConfig>,
    /// Sign-in through the team's OpenID provider.
    pub oidc: Option<OidcConfig>,
}

/// `https://host:8443/mcp` → `https://host:8443`.
pub fn origin_of(resource: &str) -> String {
    match resource.find("://") {
        Some(i) => match resource[i + 3..].find('/') {
            Some(j) => resource[..i + 3 + j].to_owned(),
            None => resource.to_owned(),
        },
        None => resource.to_owned(),
    }
}

pub(super) fn validate(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    server: &ServerConfig,
    resource: &str,
    api_keys: bool,
) -> Option<OAuthConfig> {
    let o = &raw.auth.oauth;
    if o.enabled != Some(true) {
        return None;
    }
    let api_key_sign_in = o.api_key_sign_in.unwrap_or(api_keys);
    if o.api_key_sign_in == Some(true) && !api_keys {
        e.push(
            "auth.oauth.api_key_sign_in",
            "needs API keys (auth.api_keys_file): there is no key to sign in with",
        );
    }
    let oidc = oidc(e, &o.oidc, raw);
    if !api_key_sign_in && oidc.is_none() {
        e.push(
            "auth.oauth.api_key_sign_in",
            "no sign-in method is configured: set auth.oauth.api_key_sign_in = true (with auth.api_keys_file) or [auth.oauth.oidc]",
        );
    }
    let access_token_ttl = duration(
        e,
        "auth.oauth.access_token_ttl",
        o.access_token_ttl.as_deref(),
        Duration::from_secs(15 * 60),
    );
    if !(Duration::from_secs(10)..=Duration::from_secs(24 * 3600)).contains(&access_token_ttl) {
        e.push(
            "auth.oauth.access_token_ttl",
            "must be between 10s and 24h (it bounds how long a removed person keeps access)",
        );
    }
    let refresh_token_ttl = duration(
        e,
        "auth.oauth.refresh_token_ttl",
        o.refresh_token_ttl.as_deref(),
        Duration::from_secs(30 * 24 * 3600),
    );
    if refresh_token_ttl < access_token_ttl {
        e.push(
            "auth.oauth.refresh_token_ttl",
            "must be at least auth.oauth.access_token_ttl",
        );
    }
    let registration_rate = match o.registration_rate.as_deref() {
        None => Rate::parse("20/min").expect("default rate parses"),
        Some(text) => Rate::parse(text).unwrap_or_else(|why| {
            e.push("auth.oauth.registration_rate", why);
            Rate::parse("20/min").expect("default rate parses")
        }),
    };
    let mut clients = Vec::new();
    for (i, c) in o
        .clients
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let key = format!("auth.oauth.clients[{i}]");
        if c.client_id.trim().is_empty() || c.client_id.len() > 200 {
            e.push(&key, "client_id must be 1-200 characters");
        }
        if c.redirect_uris.is_empty() {
            e.push(&key, "redirect_uris needs at least one URI");
        }
        for uri in &c.redirect_uris {
            if let Err(why) = check_redirect_uri(uri) {
                e.push(&key, format!("redirect_uris: {uri:?} {why}"));
            }
        }
        clients.push(OAuthClientConfig {
            name: c.name.clone().unwrap_or_else(|| c.client_id.clone()),
            client_id: c.client_id,
            redirect_uris: c.redirect_uris,
        });
    }
    let key_only_hosts: Vec<String> = o
        .key_only_hosts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if server.transport == super::Transport::Stdio {
        e.push(
            "auth.oauth.enabled",
            "has no meaning with server.transport = \"stdio\"",
        );
    }
    Some(OAuthConfig {
        issuer: origin_of(resource),
        signing_key_file: path_of(&o.signing_key_file),
        access_token_ttl,
        refresh_token_ttl,
        api_key_sign_in,
        registration: o.registration.unwrap_or(true),
        registration_rate,
        client_metadata_documents: o.client_metadata_documents.unwrap_or(true),
        metadata_allow_private: o.metadata_allow_private.unwrap_or(false),
        metadata_ca_file: path_of(&o.metadata_ca_file),
        key_only_hosts,
        clients,
        oidc,
    })
}

/// `[auth.oauth.oidc]`, when its issuer is set.
fn oidc(e: &mut Errors<'_>, o: &RawOidc, raw: &RawConfig) -> Option<OidcConfig> {
    let issuer = o.issuer.clone().filter(|i| !i.is_empty())?;
    let loopback_http = url::Url::parse(&issuer).ok().is_some_and(|u| {
        u.scheme() == "http" && is_loopback_host(u.host_str().unwrap_or_default())
    });
    if !issuer.starts_with("https://") && !loopback_http {
        e.push(
            "auth.oauth.oidc.issuer",
            "must be an https:// URL (plain http only for loopback)",
        );
    }
    let client_id = o.client_id.clone().unwrap_or_default();
    if client_id.is_empty() {
        e.push(
            "auth.oauth.oidc.client_id",
            "is required with auth.oauth.oidc.issuer",
        );
    }
    let client_secret_file = match path_of(&o.client_secret_file) {
        Some(p) => p,
        None => {
            e.push(
                "auth.oauth.oidc.client_secret_file",
                "is required with auth.oauth.oidc.issuer (the edge is a confidential client)",
            );
            PathBuf::new()
        }
    };
    let group_tiers = o.group_tiers.clone().unwrap_or_default();
    let tiers = raw.rate_limit.tiers.clone().unwrap_or_default();
    for tier in group_tiers.values() {
        if !tiers.contains_key(tier) {
            e.push(
                "auth.oauth.oidc.group_tiers",
                format!("names tier {tier:?}, which [rate_limit.tiers] does not define"),
            );
        }
    }
    Some(OidcConfig {
        name: o
            .name
            .clone()
            .unwrap_or_else(|| "your identity provider".into()),
        issuer,
        client_id,
        client_secret_file,
        scopes: o
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
        principal_claim: o.principal_claim.clone().unwrap_or_else(|| "email".into()),
        allowed_domains: o
            .allowed_domains
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        groups_claim: o.groups_claim.clone().unwrap_or_else(|| "groups".into()),
        allowed_groups: o.allowed_groups.clone().unwrap_or_default(),
        group_tiers,
        ca_file: path_of(&o.ca_file),
    })
}

/// A redirect URI a client may register: absolute, no fragment; `https`, `http` only on
/// a loopback host (RFC 8252 §7.3), or a private-use scheme of a native app (§7.1).
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    let parsed = url::Url::parse(uri).map_err(|_| "is not an absolute URI")?;
    if parsed.fragment().is_some() {
        return Err("must not have a fragment");
    }
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "http" if is_loopback_host(parsed.host_str().unwrap_or_default()) => Ok(()),
        "http" => Err("must be https (plain http only for a loopback host)"),
        "javascript" | "data" | "file" | "about" | "blob" | "vbscript" | "ws" | "wss" => {
            Err("uses a scheme that cannot be a redirect")
        }
        scheme if scheme.contains('.') || scheme.len() > 2 => Ok(()),
        _ => Err("uses a scheme that cannot be a redirect"),
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_a_client_may_register() {
        for ok in [
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/callback",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "com.example.app:/oauth",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "https://example.com/cb#frag",
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative",
            "not a uri",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_issuer_is_the_resource_origin() {
        assert_eq!(origin_of("https://h.test:8443/mcp"), "https://h.test:8443");
        assert_eq!(origin_of("https://h.test"), "https://h.test");
    }
}
