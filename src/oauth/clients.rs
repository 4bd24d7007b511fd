//! Who may ask for a sign-in: clients the operator registered in the config, clients
//! registered dynamically (RFC 7591; public clients only), and clients whose
//! `client_id` is the HTTPS URL of their metadata document (CIMD), fetched here.
//!
//! A dynamic registration is stored nowhere: its `client_id` is the registration
//! itself, sealed with the cluster key ring, so it survives a restart and works on
//! every replica sharing the ring, and a flood of registrations costs no memory.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::OAuthError;
use crate::cluster::Cluster;
use crate::config::OAuthConfig;
use crate::config::oauth::{check_redirect_uri, is_loopback_host};
use crate::sync::lock;

/// `client_id`s of dynamic registrations start with this.
const DYNAMIC_PREFIX: &str = "mcpc.";
const SEAL_CLIENT: &[u8] = b"oauth client v1";
/// Largest metadata document accepted, and the longest its fetch may take.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DOCUMENT_CACHE_FOR: Duration = Duration::from_secs(300);
const DOCUMENT_CACHE_MAX: usize = 1000;
const MAX_REDIRECT_URIS: usize = 10;

/// A client, however it came to be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
}

impl Client {
    /// Is `uri` one of this client's redirect URIs? Exact match, except that a
    /// loopback `http` redirect may use any port (RFC 8252 §7.3).
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| registered == uri || same_loopback_redirect(registered, uri))
    }
}

fn same_loopback_redirect(registered: &str, asked: &str) -> bool {
    let (Ok(mut a), Ok(mut b)) = (url::Url::parse(registered), url::Url::parse(asked)) else {
        return false;
    };
    if a.scheme() != "http" || !is_loopback_host(a.host_str().unwrap_or_default()) {
        return false;
    }
    let _ = a.set_port(None);
    let _ = b.set_port(None);
    a == b
}

/// What a dynamic registration seals into its `client_id`.
#[derive(Serialize, Deserialize)]
struct Registration {
    name: String,
    redirect_uris: Vec<String>,
    iat: u64,
}

/// The RFC 7591 request, as far as a public client's registration needs it.
#[derive(Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
}

/// A client ID metadata document, as far as it is read.
#[derive(Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
}

pub struct Clients {
    config: Arc<OAuthConfig>,
    cluster: Arc<Cluster>,
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    documents: Mutex<HashMap<String, (Instant, Client)>>,
    fetcher: Option<Fetcher>,
}

impl Clients {
    pub fn new(config: Arc<OAuthConfig>, cluster: Arc<Cluster>) -> Result<Clients, String> {
        let rate = config.registration_rate;
        let per = rate.per / rate.count.get();
        let quota = Quota::with_period(per)
            .unwrap_or(Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(rate.count);
        let fetcher = match config.client_metadata_documents {
            true => Some(Fetcher::new(&config)?),
            false => None,
        };
        Ok(Clients {
            registrations: RateLimiter::keyed(quota),
            documents: Mutex::new(HashMap::new()),
            fetcher,
            config,
            cluster,
        })
    }

    /// Whoever `client_id` names, or why it is no client of ours.
    pub async fn find(&self, client_id: &str) -> Result<Client, OAuthError> {
        if let Some(c) = self
            .config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
        {
            return Ok(Client {
                client_id: c.client_id.clone(),
                name: c.name.clone(),
                redirect_uris: c.redirect_uris.clone(),
            });
        }
        if let Some(sealed) = client_id.strip_prefix(DYNAMIC_PREFIX) {
            let registration = self
                .cluster
                .ring()
                .open_for(SEAL_CLIENT, sealed, 8192)
                .and_then(|plain| serde_json::from_slice::<Registration>(&plain).ok())
                .ok_or_else(|| OAuthError::invalid_client("unknown client_id (registered with another server, or its key was removed): register again"))?;
            return Ok(Client {
                client_id: client_id.to_owned(),
                name: registration.name,
                redirect_uris: registration.redirect_uris,
            });
        }
        if client_id.starts_with("https://") {
            return self.document(client_id).await;
        }
        Err(OAuthError::invalid_client("unknown client_id"))
    }

    /// `POST /register`: a public client, answered with its sealed `client_id`.
    pub fn register(&self, ip: IpAddr, request: RegistrationRequest) -> Result<Value, OAuthError> {
        if !self.config.registration {
            return Err(OAuthError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "dynamic client registration is off on this server (auth.oauth.registration)",
            ));
        }
        if self.registrations.len() > 50_000 {
            self.registrations.retain_recent();
        }
        if self.registrations.check_key(&ip).is_err() {
            crate::metrics::oauth_refused("register", "rate_limited");
            return Err(OAuthError::too_many(
                "too many registrations from this address; wait and retry",
            ));
        }
        let bad =
            |why: String| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_client_metadata", why);
        match request.token_endpoint_auth_method.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(bad(format!(
                    "token_endpoint_auth_method {other:?}: only public clients (\"none\") are registered here; use PKCE"
                )));
            }
        }
        if let Some(grants) = &request.grant_types
            && grants
                .iter()
                .any(|g| g != "authorization_code" && g != "refresh_token")
        {
            return Err(bad(
                "grant_types: only authorization_code and refresh_token".into(),
            ));
        }
        if let Some(types) = &request.response_types
            && types.iter().any(|t| t != "code")
        {
            return Err(bad("response_types: only code".into()));
        }
        let redirect_uris = checked_redirect_uris(&request.redirect_uris)
            .map_err(|why| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", why))?;
        let name: String = request
            .client_name
            .unwrap_or_else(|| "An MCP client".into())
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let iat = crate::auth::edge_token::now_secs();
        let registration = Registration {
            name: name.clone(),
            redirect_uris: redirect_uris.clone(),
            iat,
        };
        let plain = serde_json::to_vec(&registration).expect("serializable");
        let client_id = format!(
            "{DYNAMIC_PREFIX}{}",
            self.cluster.ring().seal_for(SEAL_CLIENT, &plain)
        );
        let mut answer = json!({
            "client_id": client_id,
            "client_id_issued_at": iat,
            "client_name": name,
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        });
        if let Some(scope) = request.scope {
            answer["scope"] = Value::from(scope);
        }
        Ok(answer)
    }

    /// A CIMD client: its document, from the cache or fetched (bounded in size and
    /// time, no redirects, no private addresses unless allowed).
    async fn document(&self, url: &str) -> Result<Client, OAuthError> {
        let Some(fetcher) = &self.fetcher else {
            return Err(OAuthError::invalid_client(
                "client ID metadata documents are off on this server (auth.oauth.client_metadata_documents)",
            ));
        };
        if let Some((at, client)) = lock(&self.documents).get(url)
            && at.elapsed() < DOCUMENT_CACHE_FOR
        {
            return Ok(client.clone());
        }
        let client = fetch_document(fetcher, url, self.config.metadata_allow_private)
            .await
            .map_err(|why| {
                crate::metrics::oauth_refused("client_metadata", "bad_document");
                OAuthError::invalid_client(format!("client metadata document {url}: {why}"))
            })?;
        let mut cache = lock(&self.documents);
        if cache.len() >= DOCUMENT_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < DOCUMENT_CACHE_FOR);
            if cache.len() >= DOCUMENT_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(url.to_owned(), (Instant::now(), client.clone()));
        Ok(client)
    }
}

fn checked_redirect_uris(uris: &[String]) -> Result<Vec<String>, String> {
    if uris.is_empty() {
        return Err("redirect_uris: at least one is required".into());
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(format!("redirect_uris: at most {MAX_REDIRECT_URIS}"));
    }
    for uri in uris {
        if uri.len() > 2000 {
            return Err("redirect_uris: a URI over 2000 characters".into());
        }
        check_redirect_uri(uri).map_err(|why| format!("redirect_uris: {uri:?} {why}"))?;
    }
    Ok(uris.to_vec())
}

/// How metadata documents are fetched: no redirects followed, bounded time, the
/// extra CA of `auth.oauth.metadata_ca_file`. A client is built per fetch, pinned to
/// the addresses checked (fetches are rare: documents are cached).
struct Fetcher {
    roots: Vec<reqwest::Certificate>,
}

impl Fetcher {
    fn new(config: &OAuthConfig) -> Result<Fetcher, String> {
        let mut roots = Vec::new();
        if let Some(path) = &config.metadata_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("auth.oauth.metadata_ca_file {}: {e}", path.display()))?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("auth.oauth.metadata_ca_file {}: {e}", path.display()))?;
        }
        Ok(Fetcher { roots })
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("mcp-edge/", env!("CARGO_PKG_VERSION")));
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        builder
    }
}

/// An address a server on the internet has: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

async fn fetch_document(
    fetcher: &Fetcher,
    url: &str,
    allow_private: bool,
) -> Result<Client, String> {
    let parsed = url::Url::parse(url).map_err(|_| "not a URL".to_owned())?;
    if parsed.scheme() != "https" {
        return Err("must be an https URL".into());
    }
    if parsed.path() == "/" || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err("must be an https URL with a path, no fragment and no user".into());
    }
    let host = parsed.host_str().ok_or("has no host")?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::time::timeout(
        FETCH_TIMEOUT,
        tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port)),
    )
    .await
    .map_err(|_| "its host name did not resolve in time".to_owned())?
    .map_err(|_| "its host name does not resolve".to_owned())?
    .collect();
    if addrs.is_empty() {
        return Err("its host name does not resolve".into());
    }
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err("its host resolves to a private or loopback address (auth.oauth.metadata_allow_private is off)".into());
    }
    // Connect only to the addresses just checked (no second look-up to rebind).
    let client = fetcher
        .builder()
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut response = tokio::time::timeout(
        FETCH_TIMEOUT,
        client
            .get(parsed.clone())
            .header(http::header::ACCEPT, "application/json")
            .send(),
    )
    .await
    .map_err(|_| "took too long to answer".to_owned())?
    .map_err(|e| format!("cannot be fetched: {}", without_url(&e)))?;
    if response.status().is_redirection() {
        return Err("answered with a redirect (not followed)".into());
    }
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(format!("is larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout(FETCH_TIMEOUT, response.chunk())
            .await
            .map_err(|_| "took too long to send".to_owned())?
            .map_err(|e| format!("broke off: {}", without_url(&e)))?;
        let Some(chunk) = chunk else { break };
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("is larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
    }
    let document: Document = serde_json::from_slice(&body)
        .map_err(|e| format!("is not a client metadata document: {e}"))?;
    if document.client_id != url {
        return Err(format!(
            "names client_id {:?}, not its own URL",
            document.client_id
        ));
    }
    if let Some(method) = &document.token_endpoint_auth_method
        && method != "none"
    {
        return Err(format!(
            "token_endpoint_auth_method {method:?}: only public clients (\"none\")"
        ));
    }
    let redirect_uris = checked_redirect_uris(&document.redirect_uris)?;
    Ok(Client {
        client_id: url.to_owned(),
        name: document
            .client_name
            .unwrap_or_else(|| host.clone())
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect(),
        redirect_uris,
    })
}

/// What went wrong with a fetch, without the URL (the caller names it once).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("took too long to answer ({} s)", FETCH_TIMEOUT.as_secs());
    }
    let mut text = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    match text.is_empty() {
        true => "the connection failed".to_owned(),
        false => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_others_exactly() {
        let c = Client {
            client_id: "c".into(),
            name: "c".into(),
            redirect_uris: vec![
                "http://127.0.0.1/callback".into(),
                "https://app.example.com/cb".into(),
            ],
        };
        assert!(c.redirect_allowed("http://127.0.0.1:51234/callback"));
        assert!(c.redirect_allowed("https://app.example.com/cb"));
        assert!(!c.redirect_allowed("http://127.0.0.1:51234/other"));
        assert!(!c.redirect_allowed("https://app.example.com:8443/cb"));
        assert!(!c.redirect_allowed("https://app.example.com/cb/extra"));
        assert!(!c.redirect_allowed("https://evil.example.com/cb"));
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
