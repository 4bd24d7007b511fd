//! The session-id key ring and the sealed `Mcp-Session-Id`.
//!
//! A sealed id is base64url (no padding) of
//! `version (1) || key id (4) || nonce (12) || AES-256-GCM(claims) || tag (16)`,
//! with the version and key id as associated data. The claims are
//! `expiry (u64 BE, unix seconds) || principal digest (16) || owner length (u8) ||
//! owner || inner id`. Each ring key yields, through HMAC-SHA256 with distinct labels,
//! an AEAD key, a peer-hop HMAC key and a public key id, so one 32-byte secret serves
//! all three and nothing slow runs per request.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
/// Values sealed by [`KeyRing::seal_for`].
const SEALED_VERSION: u8 = 2;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
pub const DIGEST_LEN: usize = 16;
/// Longest sealed id accepted, so a huge header costs no decoding work.
const MAX_SEALED_LEN: usize = 1024;

/// Why a key-ring file was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("session key ring {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "session key ring {path}: no keys (one base64 key per line, e.g. `openssl rand -base64 32`)"
    )]
    Empty { path: PathBuf },
    #[error("session key ring {path} line {line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// What a sealed id says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The owning replica's peer address; empty for a single replica.
    pub owner: String,
    /// rmcp's (or the legacy transport's) own session id.
    pub inner: String,
    pub principal: [u8; DIGEST_LEN],
    /// Unix seconds.
    pub expires: u64,
}

struct RingKey {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
    peer: hmac::Key,
}

/// The keys in force: the first seals and signs, all open and verify.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} key(s))", self.keys.len())
    }
}

fn derive(secret: &[u8], label: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    Zeroizing::new(hmac::sign(&key, label).as_ref().to_vec())
}

impl RingKey {
    fn new(secret: &[u8; 32]) -> RingKey {
        let seal = derive(secret, b"mcp-edge session-id seal v1");
        let peer = derive(secret, b"mcp-edge peer hop v1");
        let id = derive(secret, b"mcp-edge key id v1");
        let unbound = UnboundKey::new(&AES_256_GCM, &seal).expect("32-byte AES-256 key");
        RingKey {
            id: id[..KEY_ID_LEN].try_into().expect("4 bytes"),
            aead: LessSafeKey::new(unbound),
            peer: hmac::Key::new(hmac::HMAC_SHA256, &peer),
        }
    }
}

impl KeyRing {
    /// One random key, living only in this process (single replica without a ring file).
    pub fn random() -> KeyRing {
        let mut secret = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(secret.as_mut())
            .expect("system random source");
        KeyRing {
            keys: vec![RingKey::new(&secret)],
        }
    }

    pub fn load_file(path: &Path) -> Result<KeyRing, RingError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| RingError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        KeyRing::parse(&text, path)
    }

    /// One standard-base64 32-byte key per line; `#` comments and blank lines skipped.
    pub fn parse(text: &str, path: &Path) -> Result<KeyRing, RingError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| RingError::BadLine {
                path: path.to_owned(),
                line: n + 1,
                reason: reason.to_owned(),
            };
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(line)
                    .map_err(|_| bad("not standard base64 (generate with `openssl rand -base64 32` or `mcp-edge gen-session-key`)"))?,
            );
            let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad(&format!("decodes to {} bytes, expected 32", bytes.len())))?,
            );
            keys.push(RingKey::new(&secret));
        }
        if keys.is_empty() {
            return Err(RingError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(KeyRing { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seal with the first key.
    pub fn seal(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let owner = claims.owner.as_bytes();
        let owner_len = u8::try_from(owner.len()).expect("peer address under 256 bytes");
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("system random source");
        let mut out = Vec::with_capacity(64 + owner.len() + claims.inner.len());
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let header_len = out.len();
        out.extend_from_slice(&claims.expires.to_be_bytes());
        out.extend_from_slice(&claims.principal);
        out.push(owner_len);
        out.extend_from_slice(owner);
        out.extend_from_slice(claims.inner.as_bytes());
        let (header, body) = out.split_at_mut(header_len);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..1 + KEY_ID_LEN]),
                body,
            )
            .expect("AES-GCM seal");
        out.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The claims of an id sealed by any key in the ring; `None` for anything else.
    pub fn open(&self, sealed: &str) -> Option<Claims> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let header_len = 1 + KEY_ID_LEN + NONCE_LEN;
        if raw.len() < header_len + 8 + DIGEST_LEN + 1 + TAG_LEN || raw[0] != VERSION {
            return None;
        }
        let key = self.keys.iter().find(|k| raw[1..1 + KEY_ID_LEN] == k.id)?;
        let (header, body) = raw.split_at_mut(header_len);
        let nonce = Nonce::try_assume_unique_for_key(&header[1 + KEY_ID_LEN..]).ok()?;
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&header[..1 + KEY_ID_LEN]), body)
            .ok()?;
        let expires = u64::from_be_bytes(plain[..8].try_into().ok()?);
        let principal: [u8; DIGEST_LEN] = plain[8..8 + DIGEST_LEN].try_into().ok()?;
        let rest = &plain[8 + DIGEST_LEN..];
        let owner_len = usize::from(*rest.first()?);
        let owner = rest.get(1..1 + owner_len)?;
        let inner = rest.get(1 + owner_len..)?;
        Some(Claims {
            owner: String::from_utf8(owner.to_vec()).ok()?,
            inner: String::from_utf8(inner.to_vec()).ok()?,
            principal,
            expires,
        })
    }

    /// Seal `plain` for one `purpose` (a short label, bound as associated data, so a
    /// value sealed for one use never opens as another): an authorization code, a
    /// refresh token, a client registration. Same layout as a session id, version 2.
    pub fn seal_for(&self, purpose: &[u8], plain: &[u8]) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("system random source");
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(SEALED_VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let header_len = out.len();
        out.extend_from_slice(plain);
        let (header, body) = out.split_at_mut(header_len);
        let aad = [&header[..1 + KEY_ID_LEN], purpose].concat();
        let tag = key
            .aead
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
            .expect("AES-GCM seal");
        out.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// What [`KeyRing::seal_for`] sealed for `purpose` with any key of the ring; `None`
    /// for anything else (tampered, another purpose, a removed key, over `max_len`).
    pub fn open_for(&self, purpose: &[u8], sealed: &str, max_len: usize) -> Option<Vec<u8>> {
        if sealed.len() > max_len {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let header_len = 1 + KEY_ID_LEN + NONCE_LEN;
        if raw.len() < header_len + TAG_LEN || raw[0] != SEALED_VERSION {
            return None;
        }
        let key = self.keys.iter().find(|k| raw[1..1 + KEY_ID_LEN] == k.id)?;
        let (header, body) = raw.split_at_mut(header_len);
        let nonce = Nonce::try_assume_unique_for_key(&header[1 + KEY_ID_LEN..]).ok()?;
        let aad = [&header[..1 + KEY_ID_LEN], purpose].concat();
        let plain = key.aead.open_in_place(nonce, Aad::from(aad), body).ok()?;
        Some(plain.to_vec())
    }

    /// HMAC-SHA256 of a peer-hop message with the first key's peer key.
    pub fn sign(&self, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.keys[0].peer, message))
    }

    /// Does any key's peer key produce `tag` (compared in constant time by aws-lc)?
    pub fn verify(&self, message: &[u8], tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        self.keys
            .iter()
            .any(|k| hmac::verify(&k.peer, message, &tag).is_ok())
    }
}

/// A fresh ring key, standard base64, for the key-ring file.
pub fn generate_key() -> Zeroizing<String> {
    let mut secret = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(secret.as_mut())
        .expect("system random source");
    Zeroizing::new(STANDARD.encode(secret.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            owner: "10.0.0.7:8444".into(),
            inner: "0b6e2c1f-5d2a-4c8e-9f3e-2a7c1b9d4e60".into(),
            principal: [7; DIGEST_LEN],
            expires: 1_900_000_000,
        }
    }

    fn ring(keys: &[&str]) -> Result<KeyRing, RingError> {
        KeyRing::parse(&keys.join("\n"), Path::new("/run/secrets/session_keys"))
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k1 = generate_key();
        let r = ring(&[&k1]).unwrap();
        let sealed = r.seal(&claims());
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(r.open(&sealed), Some(claims()));
        // Two seals of the same claims differ (random nonce).
        assert_ne!(r.seal(&claims()), sealed);
        // Flip each character in turn: nothing opens.
        for i in 0..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != sealed {
                assert_eq!(r.open(&tampered), None, "position {i}");
            }
        }
        assert_eq!(r.open("not-sealed"), None);
        assert_eq!(r.open(""), None);
        assert_eq!(r.open(&"A".repeat(5000)), None);
        // Another ring cannot open it.
        assert_eq!(KeyRing::random().open(&sealed), None);
    }

    #[test]
    fn first_key_seals_all_keys_open() {
        let (k1, k2) = (generate_key(), generate_key());
        let old = ring(&[&k1]).unwrap();
        let rotated = ring(&["# new key first", &k2, "", &k1]).unwrap();
        assert_eq!(rotated.len(), 2);
        let old_id = old.seal(&claims());
        let new_id = rotated.seal(&claims());
        assert_eq!(rotated.open(&old_id), Some(claims()));
        assert_eq!(old.open(&new_id), None, "sealed with the new key");
        let only_new = ring(&[&k2]).unwrap();
        assert_eq!(only_new.open(&old_id), None, "old key removed");
        assert_eq!(only_new.open(&new_id), Some(claims()));
        // Peer signatures: made with the first key, verified by any.
        let tag = old.sign(b"msg");
        assert!(rotated.verify(b"msg", &tag));
        assert!(!rotated.verify(b"other", &tag));
        assert!(!only_new.verify(b"msg", &tag));
        assert!(!rotated.verify(b"msg", "###"));
    }

    #[test]
    fn values_sealed_for_a_purpose_open_only_for_it() {
        let r = ring(&[&generate_key()]).unwrap();
        let sealed = r.seal_for(b"code", b"{\"a\":1}");
        assert_eq!(r.open_for(b"code", &sealed, 4096).unwrap(), b"{\"a\":1}");
        assert_eq!(
            r.open_for(b"refresh", &sealed, 4096),
            None,
            "another purpose"
        );
        assert_eq!(
            r.open_for(b"code", &sealed, 8),
            None,
            "over the length bound"
        );
        assert_eq!(r.open(&sealed), None, "not a session id");
        assert_eq!(r.open_for(b"code", &r.seal(&claims()), 4096), None);
        let mut bytes = sealed.clone().into_bytes();
        bytes[30] = if bytes[30] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            r.open_for(b"code", &String::from_utf8(bytes).unwrap(), 4096),
            None
        );
        assert_eq!(KeyRing::random().open_for(b"code", &sealed, 4096), None);
    }

    #[test]
    fn bad_rings_name_file_and_line_never_the_key() {
        let err = ring(&["# only a comment", ""]).unwrap_err().to_string();
        assert!(
            err.contains("/run/secrets/session_keys") && err.contains("no keys"),
            "{err}"
        );
        let short = STANDARD.encode([1u8; 16]);
        let err = ring(&["# c", &generate_key(), &short])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("16 bytes"), "{err}");
        assert!(!err.contains(&short));
        let err = ring(&["not base64 at all!"]).unwrap_err().to_string();
        assert!(err.contains("line 1") && !err.contains("at all"), "{err}");
        assert!(!format!("{:?}", ring(&[&generate_key()]).unwrap()).contains('='));
    }
}
