//! TLS termination: rustls server configs from PEM files or a dev self-signed certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("certificate and key do not fit together or are unsupported: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate the dev certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Install the one process-wide crypto provider (aws-lc-rs). Safe to call repeatedly.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// ALPN protocols offered, best first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server config with TLS 1.2 and 1.3 only and ALPN h2 + http/1.1.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    install_crypto_provider();
    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Parse a PEM certificate chain and private key; the pair is checked to match.
pub fn config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    server_config(chain, key)
}

/// Load certificate chain and key from PEM files (e.g. Docker secrets under /run/secrets).
pub fn config_from_files(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let cert = read("certificate", cert_path)?;
    let key = read("private key", key_path)?;
    config_from_pem(&cert, &key, cert_path, key_path)
}

/// A dev certificate for `names`, made in memory. Returns the config and the
/// certificate PEM so clients can be told to trust it.
pub fn self_signed(names: &[String]) -> Result<(ServerConfig, String), TlsError> {
    let mut names: Vec<String> = names.to_vec();
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert_pem = certified.cert.pem();
    let chain = vec![certified.cert.der().clone()];
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).map_err(|e| {
        TlsError::BadKey {
            path: PathBuf::from("<generated>"),
            reason: e.to_string(),
        }
    })?;
    Ok((server_config(chain, key)?, cert_pem))
}

/// What the listener serves with: the rustls config, and the PEM of a generated dev
/// certificate so clients can be told to trust it.
pub struct ServingTls {
    pub config: Arc<ServerConfig>,
    pub dev_cert_pem: Option<String>,
}

/// Build the config the listener starts with; `None` when TLS is off (or ACME, whose
/// listener is set up by `crate::acme`).
pub fn initial_config(
    tls: &crate::config::TlsConfig,
    hostnames: &[String],
) -> Result<Option<ServingTls>, TlsError> {
    use crate::config::TlsConfig;
    Ok(match tls {
        TlsConfig::Files {
            cert_file,
            key_file,
        } => Some(ServingTls {
            config: Arc::new(config_from_files(cert_file, key_file)?),
            dev_cert_pem: None,
        }),
        TlsConfig::SelfSigned => {
            let (config, pem) = self_signed(hostnames)?;
            Some(ServingTls {
                config: Arc::new(config),
                dev_cert_pem: Some(pem),
            })
        }
        TlsConfig::Off => None,
        // Certificates come and go at run time: see `crate::acme`.
        TlsConfig::Acme(_) => None,
    })
}

/// The certificate and key files, reloaded into the running listener: new
/// handshakes get the new certificate, open connections keep theirs.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub rustls: axum_server::tls_rustls::RustlsConfig,
    pub status: Arc<crate::certs::CertStatus>,
}

#[async_trait::async_trait]
impl crate::reload::Reload for CertFiles {
    fn kind(&self) -> &'static str {
        "tls_certificate"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Files(vec![self.cert.clone(), self.key.clone()])
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        let config =
            config_from_files(&self.cert, &self.key).map_err(crate::reload::ReloadError::new)?;
        self.rustls.reload_from_config(Arc::new(config));
        if let Ok(pem) = std::fs::read(&self.cert) {
            self.status.set_from_pem("files", &pem);
        }
        Ok(format!("certificate from {}", self.cert.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_offers_h2_and_http11() {
        let (config, pem) = self_signed(&["edge.test".into()]).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn bad_files_are_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let err = config_from_files(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        let missing = config_from_files(&dir.path().join("nope"), &key)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope"), "{missing}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        let err = config_from_pem(
            a.cert.pem().as_bytes(),
            b.signing_key.serialize_pem().as_bytes(),
            Path::new("a.pem"),
            Path::new("b.key"),
        );
        assert!(err.is_err());
    }
}
