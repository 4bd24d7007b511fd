//! Per-principal credentials (`[backends.credentials]`): what one principal's children
//! get and nobody else's.
//!
//! A credential NAME comes from the principal's secret file `<dir>/<principal>/<NAME>`
//! or from a request header the client sends for it (`from_header`; the header wins
//! when both are there). Values are resolved when a child (or HTTP upstream session)
//! is started for a principal, never on the hot path: a principal's live child is
//! reused without reading anything. Reading the file at every start is what makes a
//! rotated file reach new children at once (and running ones after their restart).
//!
//! Values live in [`SecretString`]s from the file or header to the child's environment
//! (stdio) or the upstream request's headers (HTTP, marked sensitive); errors name the
//! credential and where it was expected, never its value.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::{BackendConfig, CredentialsConfig};

/// A credential file larger than this is refused (a token, a key: not a data file).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The credential headers of one request, taken off it by the `/mcp` chain (so the
/// access log, traces, the peer hop and rmcp never see them) and kept here, in the
/// request's extensions, for the proxy.
#[derive(Default)]
pub struct ClientCredentials(Vec<(HeaderName, SecretString)>);

impl ClientCredentials {
    fn get(&self, header: &HeaderName) -> Option<&SecretString> {
        self.0.iter().find(|(h, _)| h == header).map(|(_, v)| v)
    }
}

/// Every header some backend takes a credential from (`credentials.from_header`).
#[derive(Debug, Default)]
pub struct CredentialHeaders(Vec<HeaderName>);

impl CredentialHeaders {
    pub fn from_config(backends: &[BackendConfig]) -> CredentialHeaders {
        let mut names: Vec<HeaderName> = Vec::new();
        for c in backends.iter().filter_map(|b| b.credentials.as_ref()) {
            for h in c.from_header.keys() {
                if let Ok(h) = HeaderName::from_bytes(h.as_bytes())
                    && !names.contains(&h)
                {
                    names.push(h);
                }
            }
        }
        CredentialHeaders(names)
    }

    /// Take the credential headers off `headers`. `None` when the request has none
    /// (always, when no backend takes any: one empty loop).
    pub fn take(&self, headers: &mut HeaderMap) -> Option<Arc<ClientCredentials>> {
        let mut found = Vec::new();
        for name in &self.0 {
            // Removed even when unusable: it must not travel further either way.
            if let Some(value) = headers.remove(name)
                && let Ok(text) = std::str::from_utf8(value.as_bytes())
                && !text.trim().is_empty()
            {
                found.push((name.clone(), SecretString::from(text.trim().to_owned())));
            }
        }
        (!found.is_empty()).then(|| Arc::new(ClientCredentials(found)))
    }
}

/// Whom a connection is started for: the principal, and the credential headers of the
/// request that starts it.
#[derive(Clone, Copy)]
pub struct StartFor<'a> {
    pub principal: &'a str,
    pub client: Option<&'a ClientCredentials>,
}

/// Which header-supplied values a child was started with (a digest per
/// `from_header` entry), to notice a request that carries different ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<Option<[u8; 32]>>);

/// The credentials resolved for one start: NAME → value.
#[derive(Default)]
pub struct Credentials {
    values: Vec<(String, SecretString)>,
    pub fingerprint: Fingerprint,
}

impl Credentials {
    /// NAME and value pairs, for a stdio child's environment.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose_secret()))
    }

    fn get(&self, name: &str) -> Option<&SecretString> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Why a principal's child could not be started with its credentials. Never holds a
/// credential's value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "principal {principal:?} has no credential {name} for this backend (expected {expected}); to get one, ask {contact}"
    )]
    Missing {
        principal: String,
        name: String,
        expected: String,
        contact: String,
    },
    #[error(
        "principal {principal:?} cannot have credential files: its name {why}, so it names no directory under {dir}; ask {contact}"
    )]
    UnsafePrincipal {
        principal: String,
        why: &'static str,
        dir: String,
        contact: String,
    },
    #[error("credential {name} of principal {principal:?}: {path}: {why}")]
    Unusable {
        principal: String,
        name: String,
        path: String,
        why: String,
    },
}

impl CredentialError {
    /// The principal (or the client) has to act, not the backend or the edge.
    pub fn is_the_principals(&self) -> bool {
        !matches!(self, CredentialError::Unusable { .. })
    }

    /// Machine-readable details for the JSON-RPC error's `data`.
    pub fn data(&self) -> Option<serde_json::Value> {
        match self {
            CredentialError::Missing {
                name,
                expected,
                contact,
                ..
            } => Some(serde_json::json!({
                "missingCredential": name,
                "expected": expected,
                "contact": contact,
            })),
            _ => None,
        }
    }
}

/// The directory name of `principal` under `credentials.dir`: the name itself,
/// refused when it would not name exactly one directory entry below `dir`.
pub fn principal_dir(principal: &str) -> Result<&str, &'static str> {
    match principal {
        "" => Err("is empty"),
        "." | ".." => Err("is \".\" or \"..\""),
        p if p.contains('/') => Err("contains '/'"),
        p if p.contains('\0') => Err("contains a NUL byte"),
        p if p.len() > 255 => Err("is longer than 255 bytes"),
        p => Ok(p),
    }
}

/// One backend's `[backends.credentials]`, ready to resolve.
#[derive(Debug)]
pub struct CredentialSpec {
    dir: Option<PathBuf>,
    /// NAMEs read from files.
    files: Vec<String>,
    from_header: Vec<(HeaderName, String)>,
    /// HTTP upstreams: upstream header → NAME.
    headers: Vec<(HeaderName, String)>,
    /// Every NAME, files first.
    all: Vec<String>,
    required: Vec<String>,
    contact: String,
}

fn header_names(map: &std::collections::BTreeMap<String, String>) -> Vec<(HeaderName, String)> {
    // Validated with the config: an unusable name cannot reach here.
    map.iter()
        .filter_map(|(h, n)| Some((HeaderName::from_bytes(h.as_bytes()).ok()?, n.clone())))
        .collect()
}

fn digest(value: &SecretString) -> [u8; 32] {
    Sha256::digest(value.expose_secret().as_bytes()).into()
}

impl CredentialSpec {
    pub fn new(c: &CredentialsConfig) -> CredentialSpec {
        let mut all = c.names.clone();
        for n in c.from_header.values() {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        CredentialSpec {
            dir: c.dir.clone(),
            files: c.names.clone(),
            from_header: header_names(&c.from_header),
            headers: header_names(&c.headers),
            all,
            required: c.required.clone(),
            contact: c.contact.clone(),
        }
    }

    /// A child started with `started` cannot serve a request of `who`: the request
    /// carries a credential header with another value (the child is replaced), or lacks
    /// one the child cannot do without (the request gets the missing-credential error).
    /// Cheap: a digest per credential header the request carries.
    pub fn needs_new(&self, started: &Fingerprint, who: StartFor<'_>) -> bool {
        self.from_header
            .iter()
            .enumerate()
            .any(
                |(i, (header, name))| match who.client.and_then(|c| c.get(header)) {
                    Some(value) => started.0.get(i).copied().flatten() != Some(digest(value)),
                    None => {
                        self.required.contains(name)
                            && !self.files.contains(name)
                            && !self.from_header.iter().any(|(h, n)| {
                                n == name && who.client.is_some_and(|c| c.get(h).is_some())
                            })
                    }
                },
            )
    }

    /// The credentials of `who`, read now (files) or taken from its request (headers).
    pub fn resolve(&self, who: StartFor<'_>) -> Result<Credentials, CredentialError> {
        let from_client = |name: &str| {
            self.from_header
                .iter()
                .filter(|(_, n)| n == name)
                .find_map(|(h, _)| who.client.and_then(|c| c.get(h)))
        };
        let principal_dir = match &self.dir {
            Some(dir) if !self.files.is_empty() => Some(self.principal_dir(dir, who.principal)?),
            _ => None,
        };
        let mut values = Vec::new();
        for name in &self.all {
            let value = match from_client(name) {
                Some(v) => Some(v.clone()),
                None => match &principal_dir {
                    Some(pdir) if self.files.contains(name) => {
                        read_file(&pdir.join(name), name, who.principal)?
                    }
                    _ => None,
                },
            };
            match value {
                Some(v) => values.push((name.clone(), v)),
                None if self.required.contains(name) => {
                    return Err(CredentialError::Missing {
                        principal: who.principal.to_owned(),
                        name: name.clone(),
                        expected: self.expected(name, principal_dir.as_deref()),
                        contact: self.contact.clone(),
                    });
                }
                None => {}
            }
        }
        let fingerprint = Fingerprint(
            self.from_header
                .iter()
                .map(|(h, _)| who.client.and_then(|c| c.get(h)).map(digest))
                .collect(),
        );
        Ok(Credentials {
            values,
            fingerprint,
        })
    }

    fn principal_dir(&self, dir: &Path, principal: &str) -> Result<PathBuf, CredentialError> {
        match principal_dir(principal) {
            Ok(name) => Ok(dir.join(name)),
            Err(why) => Err(CredentialError::UnsafePrincipal {
                principal: principal.to_owned(),
                why,
                dir: dir.display().to_string(),
                contact: self.contact.clone(),
            }),
        }
    }

    /// Where `name` was looked for: "the file …", "the request header …" or both.
    fn expected(&self, name: &str, principal_dir: Option<&Path>) -> String {
        let mut places = Vec::new();
        if let Some(pdir) = principal_dir.filter(|_| self.files.iter().any(|f| f == name)) {
            places.push(format!("the file {}", pdir.join(name).display()));
        }
        for (h, _) in self.from_header.iter().filter(|(_, n)| n == name) {
            places.push(format!("the request header {h}"));
        }
        places.join(" or ")
    }

    /// The upstream request headers for an HTTP upstream (marked sensitive, so no
    /// `Debug` of them prints the value).
    pub fn upstream_headers(
        &self,
        credentials: &Credentials,
        principal: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, CredentialError> {
        let mut out = Vec::new();
        for (header, name) in &self.headers {
            let Some(value) = credentials.get(name) else {
                continue;
            };
            let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                CredentialError::Unusable {
                    principal: principal.to_owned(),
                    name: name.clone(),
                    path: format!("upstream header {header}"),
                    why: "the value cannot be sent in an HTTP header (one line of visible text)"
                        .into(),
                }
            })?;
            value.set_sensitive(true);
            out.push((header.clone(), value));
        }
        Ok(out)
    }
}

/// The trimmed text of one credential file; `None` when there is none (or it is
/// empty), so a required one gives the missing-credential error.
fn read_file(
    path: &Path,
    name: &str,
    principal: &str,
) -> Result<Option<SecretString>, CredentialError> {
    let unusable = |why: String| CredentialError::Unusable {
        principal: principal.to_owned(),
        name: name.to_owned(),
        path: path.display().to_string(),
        why,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unusable(e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unusable(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(unusable(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| unusable("not UTF-8 text".into()))?;
    let text = text.trim();
    if text.contains('\0') {
        return Err(unusable("holds a NUL byte".into()));
    }
    Ok((!text.is_empty()).then(|| SecretString::from(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(dir: Option<&Path>, required: &[&str]) -> CredentialSpec {
        CredentialSpec::new(&CredentialsConfig {
            dir: dir.map(Path::to_path_buf),
            names: vec!["TOKEN".into(), "EXTRA".into()],
            from_header: BTreeMap::from([("x-token".into(), "TOKEN".into())]),
            headers: BTreeMap::from([("x-upstream".into(), "TOKEN".into())]),
            required: required.iter().map(|s| s.to_string()).collect(),
            contact: "#platform".into(),
        })
    }

    fn client(value: &str) -> ClientCredentials {
        ClientCredentials(vec![(
            HeaderName::from_static("x-token"),
            SecretString::from(value.to_owned()),
        )])
    }

    #[test]
    fn principal_names_map_to_one_directory_entry_or_are_refused() {
        for ok in [
            "alice",
            "alice@example.com",
            "jwt:auth0|123",
            "a.b",
            "...",
            "é",
        ] {
            assert_eq!(principal_dir(ok), Ok(ok));
        }
        for bad in ["", ".", "..", "a/b", "../etc", "/", "a\0b"] {
            assert!(principal_dir(bad).is_err(), "{bad:?}");
        }
        assert!(principal_dir(&"a".repeat(256)).is_err());
    }

    #[test]
    fn files_are_read_per_principal_and_the_header_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("alice@x")).unwrap();
        std::fs::write(dir.path().join("alice@x/TOKEN"), "from-file\n").unwrap();
        let s = spec(Some(dir.path()), &["TOKEN"]);
        let who = StartFor {
            principal: "alice@x",
            client: None,
        };
        let c = s.resolve(who).unwrap();
        assert_eq!(c.env().collect::<Vec<_>>(), [("TOKEN", "from-file")]);
        let header = client("from-header");
        let c = s
            .resolve(StartFor {
                client: Some(&header),
                ..who
            })
            .unwrap();
        assert_eq!(c.get("TOKEN").unwrap().expose_secret(), "from-header");
        let h = s.upstream_headers(&c, "alice@x").unwrap();
        assert_eq!(h[0].0, "x-upstream");
        assert!(h[0].1.is_sensitive());
    }

    #[test]
    fn a_missing_credential_names_the_file_the_header_and_whom_to_ask() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(Some(dir.path()), &["TOKEN"]);
        let e = s
            .resolve(StartFor {
                principal: "bob",
                client: None,
            })
            .err()
            .unwrap();
        let text = e.to_string();
        let file = dir.path().join("bob/TOKEN");
        assert!(text.contains("TOKEN"), "{text}");
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(text.contains("the request header x-token"), "{text}");
        assert!(text.contains("ask #platform"), "{text}");
        assert!(e.is_the_principals());
        assert_eq!(e.data().unwrap()["missingCredential"], "TOKEN");
    }

    #[test]
    fn an_unsafe_principal_is_refused_before_any_file_is_read() {
        let s = spec(Some(Path::new("/nonexistent")), &[]);
        let e = s
            .resolve(StartFor {
                principal: "../root",
                client: None,
            })
            .err()
            .unwrap();
        assert!(matches!(e, CredentialError::UnsafePrincipal { .. }), "{e}");
        assert!(e.to_string().contains("contains '/'"), "{e}");
    }

    #[test]
    fn a_different_header_value_or_a_missing_required_one_needs_a_new_child() {
        let s = spec(None, &["TOKEN"]);
        let one = client("one");
        let started = s
            .resolve(StartFor {
                principal: "a",
                client: Some(&one),
            })
            .unwrap()
            .fingerprint;
        let who = |c| StartFor {
            principal: "a",
            client: c,
        };
        assert!(!s.needs_new(&started, who(Some(&one))));
        let two = client("two");
        assert!(s.needs_new(&started, who(Some(&two))));
        // TOKEN also comes from a file: a request without the header keeps the child.
        assert!(!s.needs_new(&started, who(None)));
        let header_only = CredentialSpec {
            files: vec![],
            all: vec!["TOKEN".into()],
            ..spec(None, &["TOKEN"])
        };
        assert!(header_only.needs_new(&started, who(None)));
    }

    #[test]
    fn credential_headers_are_taken_off_the_request() {
        let names = CredentialHeaders(vec![HeaderName::from_static("x-token")]);
        let mut headers = HeaderMap::new();
        headers.insert("x-token", HeaderValue::from_static("s3cret"));
        headers.insert("x-other", HeaderValue::from_static("kept"));
        let taken = names.take(&mut headers).unwrap();
        assert!(!headers.contains_key("x-token"));
        assert!(headers.contains_key("x-other"));
        assert_eq!(
            taken
                .get(&HeaderName::from_static("x-token"))
                .unwrap()
                .expose_secret(),
            "s3cret"
        );
        assert!(names.take(&mut headers).is_none());
    }
}
