//! API keys from a secrets file.
//!
//! One key per line: `<principal> <key>` or `<principal> sha256:<hex>`, optionally
//! followed by `rate=600/min burst=50`. A `#` at the start of a line or after
//! whitespace starts a comment (a `#` inside a key is part of the key). A principal may have
//! several keys (rotation: add new, move clients, remove old). Keys are hashed as
//! soon as they are read; only SHA-256 digests are kept, looked up by digest and
//! compared in constant time. No error message ever contains key material.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, PrincipalKind};
use crate::config::Rate;

/// Plaintext keys shorter than this are refused: they can be guessed.
pub const MIN_KEY_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeysError {
    #[error("cannot read API keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API keys file {path}: {problems}")]
    Invalid { path: PathBuf, problems: String },
    #[error("API keys file {path} defines no keys")]
    Empty { path: PathBuf },
}

type Digest32 = [u8; 32];

fn digest(key: &[u8]) -> Digest32 {
    Sha256::digest(key).into()
}

/// `sha256:<hex>` for a key, the form to put in the keys file instead of the key.
pub fn hash_key(key: &SecretString) -> String {
    format!(
        "sha256:{}",
        hex::encode(digest(key.expose_secret().as_bytes()))
    )
}

struct Entry {
    digest: Digest32,
    principal: Arc<Principal>,
}

/// The current set of valid keys.
#[derive(Default)]
pub struct KeyStore {
    by_digest: HashMap<Digest32, Entry>,
    /// The same principals by credential id: an OAuth token signed in with a key is
    /// checked against it on every request.
    by_credential: HashMap<Arc<str>, Arc<Principal>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.by_digest.len())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// The principal owning `presented`, if it is a valid key.
    pub fn verify(&self, presented: &SecretString) -> Option<Arc<Principal>> {
        let d = digest(presented.expose_secret().as_bytes());
        let entry = self.by_digest.get(&d)?;
        // The map lookup is on a one-way digest; confirm in constant time anyway.
        bool::from(entry.digest.ct_eq(&d)).then(|| entry.principal.clone())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// A key principal by name (its keys share every attribute but the credential).
    pub fn principal_named(&self, name: &str) -> Option<Arc<Principal>> {
        self.by_digest
            .values()
            .find(|e| e.principal.name.as_ref() == name)
            .map(|e| e.principal.clone())
    }

    /// The principal of the key behind `credential` (`key:<digest prefix>`), if that
    /// key is still in the file.
    pub fn by_credential(&self, credential: &str) -> Option<Arc<Principal>> {
        self.by_credential.get(credential).cloned()
    }

    fn from_entries(by_digest: HashMap<Digest32, Entry>) -> KeyStore {
        let by_credential = by_digest
            .values()
            .map(|e| (e.principal.credential.clone(), e.principal.clone()))
            .collect();
        KeyStore {
            by_digest,
            by_credential,
        }
    }

    /// Distinct principals, sorted.
    pub fn principals(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_digest
            .values()
            .map(|e| e.principal.name.to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// A store holding one key (the dev profile's generated key).
    pub fn single(principal: &str, key: &SecretString) -> KeyStore {
        let d = digest(key.expose_secret().as_bytes());
        let mut by_digest = HashMap::new();
        let mut p = Principal::new(principal);
        p.credential = credential_id(&d);
        by_digest.insert(
            d,
            Entry {
                digest: d,
                principal: Arc::new(p),
            },
        );
        KeyStore::from_entries(by_digest)
    }

    pub fn load_file(path: &Path, ctx: &KeyContext) -> Result<KeyStore, ApiKeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApiKeysError::Read {
            path: path.to_owned(),
            source,
        })?;
        let store = Self::parse_with(&text, ctx).map_err(|problems| ApiKeysError::Invalid {
            path: path.to_owned(),
            problems: problems.join("; "),
        })?;
        if store.is_empty() {
            return Err(ApiKeysError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(store)
    }

    /// Parse the file's text; every problem is reported with its line number.
    pub fn parse(text: &str) -> Result<KeyStore, Vec<String>> {
        Self::parse_with(text, &KeyContext::default())
    }

    /// Parse with the tiers and tool groups the config defines. Every problem is
    /// reported, each with its line number; no key is accepted unless all lines are.
    pub fn parse_with(text: &str, ctx: &KeyContext) -> Result<KeyStore, Vec<String>> {
        let mut problems = Vec::new();
        let mut collected = Collected::default();
        for (index, line) in text.lines().enumerate() {
            let line = strip_comment(line).trim();
            if line.is_empty() {
                continue;
            }
            if let Err(problem) = parse_line(line, ctx).and_then(|l| collected.add(l)) {
                problems.push(format!("line {}: {problem}", index + 1));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(collected.into_store())
    }

    /// Identifiers of every key in the set (not the keys), to find revoked ones.
    pub fn credentials(&self) -> std::collections::HashSet<Arc<str>> {
        self.by_digest
            .values()
            .map(|e| e.principal.credential.clone())
            .collect()
    }
}

/// One line of the keys file, checked on its own.
struct KeyLine<'a> {
    principal: &'a str,
    digest: Digest32,
    attrs: PrincipalAttrs,
}

/// `<principal> <key> [attribute=value ...]` (the comment already stripped).
fn parse_line<'a>(line: &'a str, ctx: &KeyContext) -> Result<KeyLine<'a>, String> {
    let mut fields = line.split_whitespace();
    let (Some(principal), Some(key)) = (fields.next(), fields.next()) else {
        return Err("expected `<principal> <key>`".into());
    };
    check_principal(principal, ctx)?;
    let digest = key_digest(principal, key)?;
    let attrs = PrincipalAttrs::parse(fields, ctx)?;
    Ok(KeyLine {
        principal,
        digest,
        attrs,
    })
}

fn check_principal(principal: &str, ctx: &KeyContext) -> Result<(), String> {
    if !principal
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
    {
        return Err(format!(
            "principal {principal:?} may only use letters, digits and - _ . @ :"
        ));
    }
    if let Some(prefix) = &ctx.reserved_prefix
        && principal.starts_with(prefix.as_str())
    {
        return Err(format!(
            "principal {principal:?} starts with {prefix:?}, which auth.jwt.principal_prefix reserves for JWT subjects"
        ));
    }
    Ok(())
}

/// The digest of a plaintext key, or the one written as `sha256:<hex>`. Errors name
/// the principal, never the key.
fn key_digest(principal: &str, key: &str) -> Result<Digest32, String> {
    if let Some(hex_digest) = key.strip_prefix("sha256:") {
        return hex::decode(hex_digest)
            .ok()
            .and_then(|b| Digest32::try_from(b).ok())
            .ok_or_else(|| "sha256: must be followed by 64 hex digits".into());
    }
    if key.len() < MIN_KEY_LEN {
        return Err(format!(
            "the key for {principal:?} is shorter than {MIN_KEY_LEN} characters"
        ));
    }
    Ok(digest(key.as_bytes()))
}

/// The lines read so far: each key once, and each principal's attributes merged
/// over all its lines.
#[derive(Default)]
struct Collected {
    keys: Vec<(String, Digest32)>,
    attrs: HashMap<String, PrincipalAttrs>,
}

impl Collected {
    fn add(&mut self, line: KeyLine<'_>) -> Result<(), String> {
        let principal = line.principal;
        match self.attrs.get_mut(principal) {
            None => {
                self.attrs.insert(principal.to_owned(), line.attrs);
            }
            Some(existing) => existing
                .merge(line.attrs)
                .map_err(|e| format!("{principal:?} {e}"))?,
        }
        match self.keys.iter().find(|(_, d)| *d == line.digest) {
            Some((owner, _)) if owner != principal => {
                Err("this key is already assigned to another principal".into())
            }
            // The same key twice for one principal: once is enough.
            Some(_) => Ok(()),
            None => {
                self.keys.push((principal.to_owned(), line.digest));
                Ok(())
            }
        }
    }

    /// Every key with its principal, which carries the attributes of all its lines.
    fn into_store(self) -> KeyStore {
        let mut by_digest = HashMap::new();
        for (name, d) in self.keys {
            let a = self.attrs.get(&name).cloned().unwrap_or_default();
            let principal = Principal {
                name: name.as_str().into(),
                kind: PrincipalKind::ApiKey,
                credential: credential_id(&d),
                limit: a.limit,
                tools: a.tools.map(Into::into),
                scopes: None,
                token_id: None,
            };
            by_digest.insert(
                d,
                Entry {
                    digest: d,
                    principal: Arc::new(principal),
                },
            );
        }
        KeyStore::from_entries(by_digest)
    }
}

/// The line without its comment. A `#` begins a comment only at the start of the line
/// or after whitespace, so a key may contain `#` (`frank abc#def`).
fn strip_comment(line: &str) -> &str {
    let mut previous_is_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && previous_is_space {
            return &line[..i];
        }
        previous_is_space = c.is_whitespace();
    }
    line
}

/// A key's public identifier: a digest prefix, safe to log and to compare.
fn credential_id(d: &Digest32) -> Arc<str> {
    format!("key:{}", hex::encode(&d[..6])).into()
}

/// What the config offers keys-file lines: named rate tiers and tool groups.
#[derive(Debug, Clone, Default)]
pub struct KeyContext {
    pub tiers: std::collections::BTreeMap<String, (Rate, NonZeroU32)>,
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Names starting with this belong to JWT subjects (`auth.jwt.principal_prefix`),
    /// so no key may take one.
    pub reserved_prefix: Option<String>,
}

impl KeyContext {
    pub fn from_config(config: &crate::config::Config) -> KeyContext {
        KeyContext {
            tiers: config.rate_limit.tiers.clone(),
            groups: config.access.groups.clone(),
            reserved_prefix: config
                .auth
                .jwt
                .as_ref()
                .map(|j| j.principal_prefix.clone())
                .filter(|p| !p.is_empty()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct PrincipalAttrs {
    limit: Option<(Rate, NonZeroU32)>,
    tools: Option<Vec<String>>,
}

impl PrincipalAttrs {
    fn parse<'a>(
        fields: impl Iterator<Item = &'a str>,
        ctx: &KeyContext,
    ) -> Result<PrincipalAttrs, String> {
        let mut rate = None;
        let mut burst = None;
        let mut tier = None;
        let mut tools: Option<Vec<String>> = None;
        for attr in fields {
            match attr.split_once('=') {
                Some(("rate", v)) => rate = Some(Rate::parse(v).map_err(|e| format!("rate: {e}"))?),
                Some(("burst", v)) => {
                    burst = Some(
                        v.parse::<u32>()
                            .ok()
                            .and_then(NonZeroU32::new)
                            .ok_or("burst must be a whole number ≥ 1")?,
                    )
                }
                Some(("tier", v)) => {
                    tier = Some(*ctx.tiers.get(v).ok_or_else(|| {
                        format!("unknown tier {v:?} (define it under [rate_limit.tiers])")
                    })?)
                }
                Some(("tools", v)) => {
                    let mut list = Vec::new();
                    for item in v.split(',').filter(|s| !s.is_empty()) {
                        match item.strip_prefix('@') {
                            Some(group) => list.extend(
                                ctx.groups
                                    .get(group)
                                    .ok_or_else(|| format!("unknown tool group {group:?} (define it under [access.groups])"))?
                                    .iter()
                                    .cloned(),
                            ),
                            None => list.push(item.to_owned()),
                        }
                    }
                    tools = Some(list);
                }
                _ => {
                    return Err(
                        "unknown attribute (expected rate=, burst=, tier= or tools=)".into(),
                    );
                }
            }
        }
        let limit = match (rate, burst, tier) {
            (Some(_), _, Some(_)) => return Err("give either rate= or tier=, not both".into()),
            (Some(r), b, None) => Some((r, b.unwrap_or(r.count))),
            (None, Some(_), _) => return Err("burst= needs rate= on the same line".into()),
            (None, None, t) => t,
        };
        Ok(PrincipalAttrs { limit, tools })
    }

    /// Lines of one principal must agree; an attribute may be given on one line only.
    fn merge(&mut self, other: PrincipalAttrs) -> Result<(), String> {
        if other.limit.is_some() {
            if self.limit.is_some() && self.limit != other.limit {
                return Err("already has a different rate on an earlier line".into());
            }
            self.limit = other.limit;
        }
        if other.tools.is_some() {
            if self.tools.is_some() && self.tools != other.tools {
                return Err("already has a different tools= list on an earlier line".into());
            }
            self.tools = other.tools;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn plain_and_hashed_keys_verify() {
        let hashed = hash_key(&secret("bob-key-0123456789"));
        let text = format!(
            "# team keys\nalice alice-key-0123456789   # laptop\n\nbob {hashed} rate=600/min burst=50\n"
        );
        let store = KeyStore::parse(&text).unwrap();
        assert_eq!(store.principals(), ["alice", "bob"]);
        let alice = store.verify(&secret("alice-key-0123456789")).unwrap();
        assert_eq!(alice.name.as_ref(), "alice");
        assert!(alice.limit.is_none());
        let bob = store.verify(&secret("bob-key-0123456789")).unwrap();
        let (rate, burst) = bob.limit.unwrap();
        assert_eq!(rate.to_string(), "600/min");
        assert_eq!(burst.get(), 50);
        assert!(store.verify(&secret("alice-key-012345678")).is_none());
    }

    #[test]
    fn problems_name_lines_but_never_keys() {
        let err = KeyStore::parse(
            "alice short\nbob sha256:zz\ncarol carol-key-0123456789 colour=blue\nalice\nd*ve dave-key-0123456789\n",
        )
        .unwrap_err();
        assert_eq!(err.len(), 5, "{err:?}");
        let all = err.join("\n");
        for n in 1..=5 {
            assert!(all.contains(&format!("line {n}:")), "{all}");
        }
        assert!(!all.contains("short") || all.contains("shorter"));
        assert!(!all.contains("carol-key"));
    }

    #[test]
    fn several_keys_per_principal_for_rotation() {
        let store =
            KeyStore::parse("alice old-key-0123456789\nalice new-key-0123456789\n").unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.verify(&secret("old-key-0123456789")).is_some());
        assert!(store.verify(&secret("new-key-0123456789")).is_some());
    }

    #[test]
    fn tiers_and_tool_lists() {
        let mut ctx = KeyContext::default();
        ctx.tiers.insert(
            "gold".into(),
            (
                Rate::parse("600/min").unwrap(),
                NonZeroU32::new(100).unwrap(),
            ),
        );
        ctx.groups.insert(
            "readers".into(),
            vec!["search_docs".into(), "read_doc".into()],
        );
        let store = KeyStore::parse_with(
            "a a-key-0123456789abcdef tier=gold tools=@readers,extra\nb b-key-0123456789abcdef\n",
            &ctx,
        )
        .unwrap();
        let a = store.verify(&secret("a-key-0123456789abcdef")).unwrap();
        assert_eq!(a.limit.unwrap().1.get(), 100);
        assert_eq!(
            a.tools.as_deref().unwrap(),
            ["search_docs".to_string(), "read_doc".into(), "extra".into()]
        );
        assert!(
            store
                .verify(&secret("b-key-0123456789abcdef"))
                .unwrap()
                .tools
                .is_none()
        );
        let err =
            KeyStore::parse_with("c c-key-0123456789abcdef tier=platinum tools=@nope\n", &ctx)
                .unwrap_err();
        assert!(err[0].contains("platinum"), "{err:?}");
        assert_ne!(
            store
                .verify(&secret("a-key-0123456789abcdef"))
                .unwrap()
                .credential,
            store
                .verify(&secret("b-key-0123456789abcdef"))
                .unwrap()
                .credential
        );
    }

    #[test]
    fn hash_inside_a_key_is_part_of_the_key() {
        let store = KeyStore::parse(
            "  # a comment\nfrank abc#def-0123456789abc # laptop\ngus gus-key-0123456789#\t# tab comment\n",
        )
        .unwrap();
        assert_eq!(
            store
                .verify(&secret("abc#def-0123456789abc"))
                .unwrap()
                .name
                .as_ref(),
            "frank"
        );
        assert!(store.verify(&secret("abc")).is_none());
        assert!(store.verify(&secret("gus-key-0123456789#")).is_some());
        assert_eq!(strip_comment("#x"), "");
        assert_eq!(strip_comment("a b#c"), "a b#c");
        assert_eq!(strip_comment("a b #c"), "a b ");
    }

    #[test]
    fn jwt_prefix_is_reserved() {
        let ctx = KeyContext {
            reserved_prefix: Some("jwt:".into()),
            ..KeyContext::default()
        };
        let err = KeyStore::parse_with("jwt:alice alice-key-0123456789\n", &ctx).unwrap_err();
        assert!(
            err[0].contains("line 1") && err[0].contains("principal_prefix"),
            "{err:?}"
        );
        assert!(KeyStore::parse_with("jwt-ok alice-key-0123456789\n", &ctx).is_ok());
    }

    #[test]
    fn one_key_cannot_belong_to_two_principals() {
        let err = KeyStore::parse("a same-key-0123456789\nb same-key-0123456789\n").unwrap_err();
        assert!(err[0].contains("line 2"));
    }
}
