//! The status page's token (`metrics.status_token_file`): a secret file, reloaded
//! like the other key files, compared in constant time, never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::reload::{Reload, ReloadError, Trigger};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("metrics.status_token_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics.status_token_file {0}: the file holds no token")]
    Empty(PathBuf),
    #[error("metrics.status_token_file {0}: the token must be at least 16 characters")]
    Short(PathBuf),
}

/// Read the token: the file's text without surrounding whitespace (a trailing newline,
/// as `echo` writes, is not part of it).
pub fn read(path: &Path) -> Result<SecretString, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty(path.to_owned()));
    }
    if token.chars().count() < 16 {
        return Err(TokenError::Short(path.to_owned()));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// The token in force: only its SHA-256 is kept, and compared in constant time.
pub struct StatusToken {
    path: PathBuf,
    digest: ArcSwap<[u8; 32]>,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl StatusToken {
    pub fn new(path: PathBuf, token: &SecretString) -> Arc<StatusToken> {
        Arc::new(StatusToken {
            path,
            digest: ArcSwap::from_pointee(digest(token.expose_secret())),
        })
    }

    /// Whether `presented` is the token (digests compared: the time taken says
    /// nothing about its length or its first differing character).
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(digest(presented).ct_eq(&**self.digest.load()))
    }
}

/// Reloads the token file (`status_token`).
pub struct TokenFile(pub Arc<StatusToken>);

#[async_trait::async_trait]
impl Reload for TokenFile {
    fn kind(&self) -> &'static str {
        "status_token"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Files(vec![self.0.path.clone()])
    }

    async fn reload(&self) -> Result<String, ReloadError> {
        let token = read(&self.0.path).map_err(ReloadError::new)?;
        self.0.digest.store(Arc::new(digest(token.expose_secret())));
        Ok(format!("status page token from {}", self.0.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_is_read_trimmed_compared_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token-0123456789\n").unwrap();
        let token = StatusToken::new(path.clone(), &read(&path).unwrap());
        assert!(token.matches("first-token-0123456789"));
        assert!(!token.matches("first-token-012345678"));
        assert!(!token.matches(""));
        std::fs::write(&path, "short\n").unwrap();
        let file = TokenFile(token.clone());
        let err = file.reload().await.unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("short"), "the token never appears: {err}");
        assert!(token.matches("first-token-0123456789"), "last good kept");
        std::fs::write(&path, "second-token-0123456789").unwrap();
        file.reload().await.unwrap();
        assert!(token.matches("second-token-0123456789"));
        assert!(!token.matches("first-token-0123456789"));
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(read(&path), Err(TokenError::Empty(_))));
    }
}
