//! Everything a server must load before it serves — certificates, API keys, JWT
//! keys, the session key ring, Redis settings, backend programs and files, the docs
//! directory, the audit file — checked once, here, by both `serve` ([`crate::app::start`])
//! and `check-config`, so the two can never disagree. Every problem is collected,
//! not only the first; each names the file involved.

use crate::auth::jwt::{self, KeySet};
use crate::auth::{KeyContext, KeyStore};
use crate::cluster::KeyRing;
use crate::config::{AuditOutput, Config, TlsConfig, Transport};
use crate::mcp::backends::FileProblem;
use crate::tls::{self, ServingTls};

/// What was loaded, handed to the server so nothing is read twice.
pub struct Loaded {
    /// Files or self-signed; `None` for ACME and plain HTTP.
    pub tls: Option<ServingTls>,
    /// From `auth.api_keys_file` (none configured: the dev key is made at start).
    pub api_keys: Option<KeyStore>,
    pub jwt_keys: Option<KeySet>,
    pub ring: KeyRing,
    /// `auth.oauth.signing_key_file` (random when `[auth.oauth]` names none).
    pub oauth_keys: Option<crate::auth::SigningKeys>,
    /// `metrics.status_token_file`, when the status page has one.
    pub status_token: Option<secrecy::SecretString>,
    /// One line per thing loaded, for `check-config`.
    pub notes: Vec<String>,
}

/// Every problem found, one line each (`tls: …`, `auth: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Problems(pub Vec<String>);

/// Load and check everything `config` needs (`check-config`: every problem fails).
pub fn check(config: &Config) -> Result<Loaded, Problems> {
    check_with(config, false)
}

/// [`check`] for `serve`: a backend program that is not there yet is logged, not
/// fatal — the proxy answers its calls with a clear error and retries with backoff
/// (it may be installed or mounted later). Every other problem fails both alike.
pub fn check_to_serve(config: &Config) -> Result<Loaded, Problems> {
    check_with(config, true)
}

fn check_with(config: &Config, serving: bool) -> Result<Loaded, Problems> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let http = config.server.transport == Transport::StreamableHttp;
    let tls = if http {
        check_tls(config, &mut problems)
    } else {
        None
    };
    let api_keys = if http {
        check_api_keys(config, &mut problems, &mut notes)
    } else {
        None
    };
    let jwt_keys = config
        .auth
        .jwt
        .as_ref()
        .and_then(|jwt| match jwt::load_local_keys(jwt) {
            Ok(keys) => {
                notes.push(format!("jwt: {} local verification key(s)", keys.len()));
                Some(keys)
            }
            Err(e) => {
                problems.push(format!("jwt: {e}"));
                None
            }
        });
    let ring = match crate::cluster::load_ring(config) {
        Ok(ring) => {
            if let Some(path) = &config.cluster.key_ring_file {
                notes.push(format!(
                    "session keys: {} key(s) in {}",
                    ring.len(),
                    path.display()
                ));
            }
            ring
        }
        Err(e) => {
            problems.push(format!("cluster: {e}"));
            KeyRing::random()
        }
    };
    if let Some(redis) = &config.redis {
        match crate::ratelimit::redis::check(redis) {
            Ok(()) => notes.push(format!(
                "redis: {} (not contacted by check-config)",
                crate::config::redacted_url(&redis.url)
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for problem in crate::mcp::backends::check_files(config) {
        match problem {
            FileProblem::ProgramMissing(problem) if serving => {
                tracing::warn!(%problem, "backend program missing; its calls fail until it appears");
            }
            problem => problems.push(problem.to_string()),
        }
    }
    check_docs(config, &mut problems);
    check_audit(config, &mut problems);
    let oauth_keys = check_oauth(config, &mut problems, &mut notes);
    let status_token = config
        .status_page
        .as_ref()
        .and_then(|page| page.token_file.as_ref())
        .and_then(|path| match crate::status::token::read(path) {
            Ok(token) => {
                notes.push(format!("status page: token from {}", path.display()));
                Some(token)
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        });
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Loaded {
        tls,
        api_keys,
        jwt_keys,
        ring,
        oauth_keys,
        status_token,
        notes,
    })
}

/// The authorization server's signing keys and the metadata documents' CA.
fn check_oauth(
    config: &Config,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<crate::auth::SigningKeys> {
    let oauth = config.auth.oauth.as_ref()?;
    if let Some(path) = &oauth.metadata_ca_file
        && let Err(e) = std::fs::read(path)
    {
        problems.push(format!(
            "oauth: auth.oauth.metadata_ca_file {}: {e}",
            path.display()
        ));
    }
    if let Some(oidc) = &oauth.oidc {
        match std::fs::read_to_string(&oidc.client_secret_file) {
            Ok(text) if !text.trim().is_empty() => notes.push(format!(
                "oauth: identity provider {} (client {}; reachability is checked at start and logged, not here)",
                oidc.issuer, oidc.client_id
            )),
            Ok(_) => problems.push(format!(
                "oauth: auth.oauth.oidc.client_secret_file {} is empty",
                oidc.client_secret_file.display()
            )),
            Err(e) => problems.push(format!(
                "oauth: auth.oauth.oidc.client_secret_file {}: {e}",
                oidc.client_secret_file.display()
            )),
        }
    }
    let Some(path) = &oauth.signing_key_file else {
        notes.push(
            "oauth: no signing_key_file: a random key for this process (tokens end at restart)"
                .into(),
        );
        return Some(crate::auth::SigningKeys::random());
    };
    match crate::auth::SigningKeys::load_file(path) {
        Ok(keys) => {
            notes.push(format!(
                "oauth: {} signing key(s) in {}",
                keys.len(),
                path.display()
            ));
            Some(keys)
        }
        Err(e) => {
            problems.push(format!("oauth: {e}"));
            None
        }
    }
}

fn check_tls(config: &Config, problems: &mut Vec<String>) -> Option<ServingTls> {
    if let TlsConfig::Acme(settings) = &config.tls
        && let Err(e) = crate::acme::check(settings)
    {
        problems.push(e.to_string());
    }
    match tls::initial_config(&config.tls, &config.server.public_hostnames) {
        Ok(serving) => serving,
        Err(e) => {
            problems.push(format!("tls: {e}"));
            None
        }
    }
}

fn check_api_keys(
    config: &Config,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<KeyStore> {
    if !config.auth.mode.api_keys() {
        return None;
    }
    let path = config.auth.api_keys_file.as_ref()?;
    match KeyStore::load_file(path, &KeyContext::from_config(config)) {
        Ok(store) => {
            notes.push(format!(
                "api keys: {} key(s) for {} principal(s) in {}",
                store.len(),
                store.principals().len(),
                path.display()
            ));
            Some(store)
        }
        Err(e) => {
            problems.push(format!("auth: {e}"));
            None
        }
    }
}

/// The docs directory the built-in tools index (when they are served).
fn check_docs(config: &Config, problems: &mut Vec<String>) {
    if !crate::mcp::backends::Backend::needs_docs(config) {
        return;
    }
    let dir = &config.docs_dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => problems.push(format!(
            "docs.dir: {} is not a directory (MCP_DOCS_DIR)",
            dir.display()
        )),
        Err(e) => problems.push(format!("docs.dir: {}: {e} (MCP_DOCS_DIR)", dir.display())),
    }
}

/// The audit file can be appended to (its directory exists; it is not a directory).
fn check_audit(config: &Config, problems: &mut Vec<String>) {
    let AuditOutput::File { path, .. } = &config.audit.output else {
        return;
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let problem = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Some("is a directory".to_owned()),
        Ok(_) => None,
        Err(_) if !parent.is_dir() => {
            Some(format!("directory {} does not exist", parent.display()))
        }
        Err(_) => None,
    };
    if let Some(p) = problem {
        problems.push(format!(
            "audit.file: {}: {p} (MCP_AUDIT_FILE)",
            path.display()
        ));
    }
}
