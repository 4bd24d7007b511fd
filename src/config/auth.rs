//! `[auth]`, `[auth.jwt]` and `[access]`: how callers prove who they are, which
//! resource URIs they are for, and which tools each scope opens.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Choice, Errors, Profile, RawConfig, ServerConfig, duration, path_of, ser_duration};

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// API keys from a secrets file.
    ApiKeys,
    /// JWTs from an identity provider.
    Jwt,
    /// Either: tokens that look like JWTs are checked as JWTs, others as API keys.
    #[serde(rename(deserialize = "api-keys+jwt"))]
    ApiKeysAndJwt,
    /// No authentication: only allowed on a loopback bind, and only when set explicitly.
    None,
}

impl AuthMode {
    pub fn api_keys(self) -> bool {
        matches!(self, AuthMode::ApiKeys | AuthMode::ApiKeysAndJwt)
    }
    pub fn jwt(self) -> bool {
        matches!(self, AuthMode::Jwt | AuthMode::ApiKeysAndJwt)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtKeyConfig {
    pub kid: Option<String>,
    pub file: PathBuf,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: Vec<String>,
    pub keys: Vec<JwtKeyConfig>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_ca_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub jwks_refresh: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
    pub principal_claim: String,
    /// Put before every JWT principal name so JWT subjects and API-key names never
    /// collide (default `jwt:`); `""` maps a subject onto the API-key principal of that name.
    pub principal_prefix: String,
    pub required_claims: Vec<String>,
    pub tier_claim: Option<String>,
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `None` with API keys means one key generated at start (dev profile only).
    pub api_keys_file: Option<PathBuf>,
    /// This server's canonical resource URI (RFC 8707), the JWT audience by default.
    pub resource: String,
    pub authorization_servers: Vec<String>,
    /// Every protected path with its own resource URI (RFC 9728): `/mcp` (= `resource`),
    /// plus `/sse` and `/messages` when the legacy transport is on.
    pub resources: Vec<(String, String)>,
    /// Scopes every JWT needs to use `/mcp` at all.
    pub required_scopes: Vec<String>,
    pub jwt: Option<JwtConfig>,
    /// The edge as its own authorization server (`[auth.oauth]`).
    pub oauth: Option<super::oauth::OAuthConfig>,
    /// Whether `resource` was derived from the listen port (not configured).
    #[serde(skip)]
    pub resource_derived: bool,
}

impl AuthConfig {
    /// Re-derive the resource URI (and the default audience) for the port actually
    /// bound when the configured port was 0.
    pub fn adopt_port(&mut self, port: u16) {
        if !self.resource_derived {
            return;
        }
        let adopt = |uri: &str| uri.replacen(":0/", &format!(":{port}/"), 1);
        let derived: Vec<String> = self.resources.iter().map(|(_, r)| r.clone()).collect();
        let old_issuer = super::oauth::origin_of(&self.resource);
        self.resource = adopt(&self.resource);
        for (_, resource) in &mut self.resources {
            *resource = adopt(resource);
        }
        if let Some(oauth) = &mut self.oauth {
            oauth.issuer = super::oauth::origin_of(&self.resource);
            for server in &mut self.authorization_servers {
                if *server == old_issuer {
                    *server = oauth.issuer.clone();
                }
            }
        }
        if let Some(jwt) = &mut self.jwt {
            for aud in &mut jwt.audience {
                if derived.contains(aud) {
                    *aud = adopt(aud);
                }
            }
        }
    }
}

/// Who may see and call which tool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccessConfig {
    pub tool_scopes: std::collections::BTreeMap<String, Vec<String>>,
    pub default_tool_scopes: Vec<String>,
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

/// `https://host/mcp` + `/sse` → `https://host/sse`: the last path segment replaced.
pub fn sibling_resource(resource: &str, path: &str) -> String {
    let (origin, resource_path) = match resource.find("://") {
        Some(i) => match resource[i + 3..].find('/') {
            Some(j) => resource.split_at(i + 3 + j),
            None => (resource, ""),
        },
        None => (resource, ""),
    };
    let parent = resource_path
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(parent, _)| parent)
        .unwrap_or("");
    format!("{origin}{parent}{path}")
}

/// JWT principals are `jwt:<sub>` unless `auth.jwt.principal_prefix` says otherwise.
pub const DEFAULT_JWT_PRINCIPAL_PREFIX: &str = "jwt:";

pub(super) fn validate(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    profile: Profile,
    server: &ServerConfig,
) -> AuthConfig {
    let mode = mode(e, raw, server);
    let api_keys_file = path_of(&raw.auth.api_keys_file);
    if mode.api_keys() && api_keys_file.is_none() && profile != Profile::Dev && server.network() {
        e.push(
            "auth.api_keys_file",
            "is required: a network listener needs auth (set MCP_API_KEYS_FILE, configure auth.jwt, or auth.mode = \"none\" on a loopback bind)",
        );
    }
    let resource = resource(e, raw, server);
    let mut resources = vec![("/mcp".to_owned(), resource.clone())];
    if raw.legacy_sse.enabled == Some(true) {
        for path in ["/sse", "/messages"] {
            resources.push((path.to_owned(), sibling_resource(&resource, path)));
        }
    }
    let required_scopes = raw.auth.required_scopes.clone().unwrap_or_default();
    let jwt = mode.jwt().then(|| jwt(e, raw, &resources));
    let oauth = super::oauth::validate(e, raw, server, &resource, mode.api_keys());
    let mut authorization_servers = raw
        .auth
        .authorization_servers
        .clone()
        .or_else(|| jwt.as_ref().map(|j| vec![j.issuer.clone()]))
        .unwrap_or_default();
    if let Some(oauth) = &oauth {
        // The edge first: it is the one every MCP client can sign in with.
        authorization_servers.retain(|s| *s != oauth.issuer);
        authorization_servers.insert(0, oauth.issuer.clone());
    }
    AuthConfig {
        mode,
        api_keys_file,
        resource_derived: raw.auth.resource.is_none(),
        resource,
        resources,
        authorization_servers,
        required_scopes,
        jwt,
        oauth,
    }
}

/// `auth.mode`, or when unset what the other auth keys imply.
fn mode(e: &mut Errors<'_>, raw: &RawConfig, server: &ServerConfig) -> AuthMode {
    match &raw.auth.mode {
        None => {
            if raw.auth.jwt.issuer.is_some() && raw.auth.api_keys_file.is_none() {
                AuthMode::Jwt
            } else if raw.auth.jwt.issuer.is_some() {
                AuthMode::ApiKeysAndJwt
            } else {
                AuthMode::ApiKeys
            }
        }
        Some(Choice::Known(AuthMode::None)) => {
            let ip = server.listen.ip();
            if !ip.is_loopback() && server.network() {
                e.push(
                    "auth.mode",
                    format!("\"none\" is only allowed on a loopback bind, but server.host is {ip}"),
                );
            }
            AuthMode::None
        }
        Some(Choice::Known(mode)) => *mode,
        // Checking keys or JWT settings for a mode nobody chose would only add noise.
        Some(Choice::Unknown(unknown)) => {
            e.push("auth.mode", unknown.to_string());
            AuthMode::None
        }
    }
}

/// `auth.resource`, by default `https://<first public hostname>[:port]/mcp`.
fn resource(e: &mut Errors<'_>, raw: &RawConfig, server: &ServerConfig) -> String {
    let host = server
        .public_hostnames
        .first()
        .map(String::as_str)
        .unwrap_or("localhost");
    let resource = raw
        .auth
        .resource
        .clone()
        .unwrap_or_else(|| match server.listen.port() {
            443 => format!("https://{host}/mcp"),
            port => format!("https://{host}:{port}/mcp"),
        });
    if !resource.starts_with("https://") && !resource.starts_with("http://") {
        e.push(
            "auth.resource",
            format!("{resource:?} must be an absolute https:// URI"),
        );
    }
    if resource.contains('#') {
        e.push("auth.resource", "must not contain a fragment (RFC 8707)");
    }
    resource
}

/// `[auth.jwt]`, when the mode accepts JWTs.
fn jwt(e: &mut Errors<'_>, raw: &RawConfig, resources: &[(String, String)]) -> JwtConfig {
    let j = &raw.auth.jwt;
    let issuer = match &j.issuer {
        Some(i) if !i.is_empty() => i.clone(),
        _ => {
            e.push(
                "auth.jwt.issuer",
                "is required when JWTs are accepted (set MCP_JWT_ISSUER)",
            );
            String::new()
        }
    };
    let keys = jwt_keys(e, raw);
    let jwks_file = path_of(&j.jwks_file);
    let jwks_url = j.jwks_url.clone().filter(|u| !u.is_empty());
    if let Some(url) = &jwks_url
        && !(url.starts_with("https://")
            || url.starts_with("http://127.")
            || url.starts_with("http://localhost"))
    {
        e.push(
            "auth.jwt.jwks_url",
            "must be https:// (plain http only for loopback)",
        );
    }
    if keys.is_empty() && jwks_file.is_none() && jwks_url.is_none() {
        e.push(
            "auth.jwt.key_file",
            "JWTs need verification keys: set auth.jwt.key_file + algorithms, [[auth.jwt.keys]], auth.jwt.jwks_file or auth.jwt.jwks_url",
        );
    }
    let max_token_bytes = j.max_token_bytes.unwrap_or(8192);
    if !(256..=65536).contains(&max_token_bytes) {
        e.push("auth.jwt.max_token_bytes", "must be between 256 and 65536");
    }
    JwtConfig {
        issuer,
        // A token for any of this server's protected paths is good on all of them
        // (an SSE client gets one for `/sse` and sends it to `/messages` too).
        audience: j
            .audience
            .clone()
            .unwrap_or_else(|| resources.iter().map(|(_, r)| r.clone()).collect()),
        keys,
        jwks_file,
        jwks_url,
        jwks_ca_file: path_of(&j.jwks_ca_file),
        jwks_refresh: duration(
            e,
            "auth.jwt.jwks_refresh",
            j.jwks_refresh.as_deref(),
            Duration::from_secs(600),
        ),
        leeway: duration(
            e,
            "auth.jwt.leeway",
            j.leeway.as_deref(),
            Duration::from_secs(60),
        ),
        principal_claim: j.principal_claim.clone().unwrap_or_else(|| "sub".into()),
        principal_prefix: j
            .principal_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_JWT_PRINCIPAL_PREFIX.into()),
        required_claims: j.required_claims.clone().unwrap_or_default(),
        tier_claim: j.tier_claim.clone(),
        max_token_bytes: max_token_bytes as usize,
    }
}

/// `auth.jwt.key_file` + `algorithms`, then every `[[auth.jwt.keys]]` entry.
fn jwt_keys(e: &mut Errors<'_>, raw: &RawConfig) -> Vec<JwtKeyConfig> {
    let j = &raw.auth.jwt;
    let mut keys = Vec::new();
    match (path_of(&j.key_file), &j.algorithms) {
        (Some(file), Some(names)) => keys.push(JwtKeyConfig {
            kid: None,
            file,
            algorithms: algorithms(e, "auth.jwt.algorithms", names),
        }),
        (Some(_), None) => e.push(
            "auth.jwt.algorithms",
            "is required with auth.jwt.key_file: name the algorithms this key may verify (e.g. RS256)",
        ),
        (None, Some(_)) => e.push("auth.jwt.key_file", "is required with auth.jwt.algorithms"),
        (None, None) => {}
    }
    for key in j.keys.clone().unwrap_or_default() {
        keys.push(JwtKeyConfig {
            kid: key.kid.clone(),
            file: PathBuf::from(&key.file),
            algorithms: algorithms(e, "auth.jwt.keys", &key.algorithms),
        });
    }
    keys
}

/// One key's algorithms: at least one, all known, all of one family.
fn algorithms(e: &mut Errors<'_>, key: &str, names: &[String]) -> Vec<jsonwebtoken::Algorithm> {
    let mut algs = Vec::new();
    for name in names {
        match name.trim().parse::<jsonwebtoken::Algorithm>() {
            Ok(a) => algs.push(a),
            Err(_) => e.push(
                key,
                format!("unknown algorithm {name:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA; \"none\" is never accepted)"),
            ),
        }
    }
    if names.is_empty() {
        e.push(key, "list at least one algorithm for the key");
    }
    let families: std::collections::BTreeSet<_> =
        algs.iter().map(|a| format!("{:?}", a.family())).collect();
    if families.len() > 1 {
        e.push(
            key,
            "one key's algorithms must all be of one family (HMAC, RSA, EC or EdDSA)",
        );
    }
    algs
}

pub(super) fn validate_access(raw: &RawConfig) -> AccessConfig {
    AccessConfig {
        tool_scopes: raw.access.tool_scopes.clone().unwrap_or_default(),
        default_tool_scopes: raw.access.default_tool_scopes.clone().unwrap_or_default(),
        groups: raw.access.groups.clone().unwrap_or_default(),
    }
}
