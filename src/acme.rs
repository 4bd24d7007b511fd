//! `tls.mode = "acme"`: certificates from an ACME CA (Let's Encrypt, or a private CA)
//! with the TLS-ALPN-01 challenge answered on the HTTPS port itself.
//!
//! rustls-acme drives the account, orders and renewals (an order starts when the
//! cached certificate is missing or two thirds of its lifetime have passed; failures
//! back off exponentially). Connections are accepted with
//! `tokio_rustls::LazyConfigAcceptor`: a ClientHello offering only `acme-tls/1` gets
//! the challenge certificate and is closed; everything else is served with the ACME
//! resolver and ALPN h2/http1.1. The account key and certificates live in a cache
//! directory created 0700, with files written 0600 (rustls-acme's own `DirCache` would
//! write private keys with the process umask).

use std::fs::{self, OpenOptions, Permissions};
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rustls::ServerConfig;
use rustls::server::Acceptor;
use rustls_acme::{AccountCache, AcmeConfig, CertCache, EventError, EventOk};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::certs::CertStatus;
use crate::config::AcmeSettings;
use crate::sync::lock;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("acme.cache_dir {path}: {source}")]
    CacheDir { path: PathBuf, source: io::Error },
    #[error("acme.ca_bundle {path}: {reason}")]
    CaBundle { path: PathBuf, reason: String },
    #[error("ACME TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A running ACME client: the TLS configs to accept with, and the background task
/// that orders and renews.
pub struct Acme {
    serving: Arc<ServerConfig>,
    challenge: Arc<ServerConfig>,
    task: Pin<Box<dyn Future<Output = ()> + Send>>,
    writes: CacheWrites,
}

/// Cache writes in progress. A write runs to its end even when the ACME task is
/// aborted at shutdown; waiting for [`CacheWrites::finished`] before the process exits
/// keeps a just-issued certificate from being lost (the next start would order again).
#[derive(Clone, Default)]
pub struct CacheWrites(Arc<tokio::sync::Mutex<()>>);

impl CacheWrites {
    /// Returns once no cache write is in progress.
    pub async fn finished(&self) {
        drop(self.0.lock().await);
    }
}

impl Acme {
    /// The acceptor for the HTTPS listener.
    pub fn acceptor(&self, handshake_timeout: Duration) -> AcmeAcceptor {
        AcmeAcceptor {
            serving: self.serving.clone(),
            challenge: self.challenge.clone(),
            handshake_timeout,
        }
    }

    /// The cache writes to wait for at shutdown.
    pub fn writes(&self) -> CacheWrites {
        self.writes.clone()
    }

    /// Start ordering/renewing in the background (abort the task on shutdown, then
    /// wait for [`Acme::writes`]).
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.task)
    }
}

/// Create the cache directory 0700 (or tighten an existing one).
pub fn prepare_cache_dir(path: &Path) -> Result<(), AcmeError> {
    let err = |source| AcmeError::CacheDir {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path).map_err(err)?;
    let meta = fs::metadata(path).map_err(err)?;
    if !meta.is_dir() {
        return Err(err(io::Error::other("not a directory")));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(0o700)).map_err(err)?;
    }
    // Fail now, not at the first order, if the directory is not writable.
    let probe = path.join(".write-test");
    fs::write(&probe, b"").map_err(err)?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

fn client_config(bundle: &Path) -> Result<Arc<rustls::ClientConfig>, AcmeError> {
    let bad = |reason: String| AcmeError::CaBundle {
        path: bundle.to_owned(),
        reason,
    };
    let pem = fs::read(bundle).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("unreadable PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// What `check-config` verifies without touching anything: the CA bundle is usable and
/// the cache path, if it exists, is a directory.
pub fn check(settings: &AcmeSettings) -> Result<(), AcmeError> {
    crate::tls::install_crypto_provider();
    if let Some(bundle) = &settings.ca_bundle {
        client_config(bundle)?;
    }
    match fs::metadata(&settings.cache_dir) {
        Ok(meta) if !meta.is_dir() => Err(AcmeError::CacheDir {
            path: settings.cache_dir.clone(),
            source: io::Error::other("not a directory"),
        }),
        _ => Ok(()),
    }
}

/// Prepare the ACME client (cache directory, CA trust) and the configs to serve with;
/// nothing runs until [`Acme::spawn`].
pub fn start(settings: &AcmeSettings, status: Arc<CertStatus>) -> Result<Acme, AcmeError> {
    crate::tls::install_crypto_provider();
    prepare_cache_dir(&settings.cache_dir)?;
    let writes = CacheWrites::default();
    let loaded = Arc::new(std::sync::Mutex::new(None));
    let cache = SecureDirCache {
        dir: settings.cache_dir.clone(),
        status: status.clone(),
        loaded: loaded.clone(),
        writes: writes.clone(),
    };
    let mut config = AcmeConfig::new(&settings.domains)
        .contact(&settings.contact)
        .directory(&settings.directory);
    if let Some(bundle) = &settings.ca_bundle {
        config = config.client_tls_config(client_config(bundle)?);
    }
    let mut state = config.cache(cache).state();
    let challenge = state.challenge_rustls_config();
    let mut serving = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(state.resolver());
    serving.alpn_protocols = crate::tls::ALPN.iter().map(|p| p.to_vec()).collect();

    let domains = settings.domains.join(",");
    let directory = settings.directory.clone();
    tracing::info!(%domains, %directory, cache = %settings.cache_dir.display(), "ACME: starting");
    status.acme_event("ordering", None);
    let task = Box::pin(async move {
        while let Some(event) = state.next().await {
            match event {
                Ok(EventOk::DeployedCachedCert) => {
                    // Ready only now: the cached file was read before, but it is served
                    // only once rustls-acme parsed it (a corrupt cache orders anew).
                    let pem = lock(&loaded).take();
                    if let Some(pem) = pem {
                        status.set_from_pem("acme", &pem);
                    }
                    tracing::info!(%domains, "ACME: serving the cached certificate");
                    status.acme_event("serving_cached", None);
                }
                Ok(EventOk::DeployedNewCert) => {
                    tracing::info!(%domains, %directory, "ACME: new certificate issued and deployed");
                    crate::metrics::secret_reload("acme_certificate", true);
                    status.acme_event("issued", None);
                }
                Ok(EventOk::CertCacheStore) => tracing::debug!("ACME: certificate cached"),
                Ok(EventOk::AccountCacheStore) => tracing::debug!("ACME: account key cached"),
                Err(e @ (EventError::Order(_) | EventError::NewCertParse(_))) => {
                    tracing::warn!(%domains, error = %e, "ACME: order failed; retrying with backoff");
                    crate::metrics::secret_reload("acme_certificate", false);
                    status.acme_event("order_failed", Some(e.to_string()));
                }
                Err(e) => {
                    tracing::warn!(%domains, error = %e, "ACME: cache problem");
                    status.acme_event("cache_problem", Some(e.to_string()));
                }
            }
        }
    });
    Ok(Acme {
        serving: Arc::new(serving),
        challenge,
        task,
        writes,
    })
}

/// An axum-server acceptor: TLS-ALPN-01 challenges get the challenge certificate,
/// everything else the ACME-issued one. Sets TCP_NODELAY like `NoDelayAcceptor`.
#[derive(Clone)]
pub struct AcmeAcceptor {
    serving: Arc<ServerConfig>,
    challenge: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

type AcceptFuture<S> =
    Pin<Box<dyn Future<Output = io::Result<(TlsStream<TcpStream>, S)>> + Send + 'static>>;

impl AcmeAcceptor {
    /// The TLS handshake on any stream (the connection layer's wrapped socket):
    /// TLS-ALPN-01 challenges are answered and closed, other clients get the ACME
    /// certificate. Bounded by the handshake timeout.
    pub async fn handshake<IO>(&self, stream: IO) -> io::Result<TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let handshake = async {
            let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
            if rustls_acme::is_tls_alpn_challenge(&start.client_hello()) {
                tracing::info!("ACME: answering a TLS-ALPN-01 challenge");
                let mut tls = start.into_stream(self.challenge.clone()).await?;
                let _ = tls.shutdown().await;
                return Err(io::Error::other("TLS-ALPN-01 challenge answered"));
            }
            start.into_stream(self.serving.clone()).await
        };
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for AcmeAcceptor {
    type Stream = TlsStream<TcpStream>;
    type Service = S;
    type Future = AcceptFuture<S>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let _ = stream.set_nodelay(true);
            Ok((this.handshake(stream).await?, service))
        })
    }
}

/// rustls-acme's cache with private files: one file per (domains, directory) for
/// certificates and per (contact, directory) for the account key, written 0600
/// through a temporary file and a rename (a crash never leaves half a key).
struct SecureDirCache {
    dir: PathBuf,
    status: Arc<CertStatus>,
    /// The certificate read from the cache, published to `status` once deployed.
    loaded: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    writes: CacheWrites,
}

fn file_name(prefix: &str, parts: &[String], directory_url: &str) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.update(directory_url.as_bytes());
    format!("{prefix}_{}", hex::encode(&h.finalize()[..16]))
}

impl SecureDirCache {
    async fn read(&self, name: String) -> Result<Option<Vec<u8>>, io::Error> {
        let path = self.dir.join(name);
        tokio::task::spawn_blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn write(&self, name: String, contents: Vec<u8>) -> Result<(), io::Error> {
        let dir = self.dir.clone();
        // Held by the blocking write itself, so it is released when the file is in
        // place even if the task awaiting it was aborted.
        let in_progress = self.writes.0.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _in_progress = in_progress;
            let tmp = dir.join(format!(".{name}.tmp"));
            let _ = fs::remove_file(&tmp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&contents)?;
            file.sync_all()?;
            fs::rename(&tmp, dir.join(&name))
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[async_trait::async_trait]
impl CertCache for SecureDirCache {
    type EC = io::Error;

    async fn load_cert(
        &self,
        domains: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, io::Error> {
        let pem = self.read(file_name("cert", domains, directory_url)).await?;
        *lock(&self.loaded) = pem.clone();
        Ok(pem)
    }

    async fn store_cert(
        &self,
        domains: &[String],
        directory_url: &str,
        cert: &[u8],
    ) -> Result<(), io::Error> {
        // rustls-acme already serves the new certificate; ready and expiry follow it
        // even if the cache cannot be written (that is logged as a cache problem).
        self.status.set_from_pem("acme", cert);
        self.write(file_name("cert", domains, directory_url), cert.to_vec())
            .await
    }
}

#[async_trait::async_trait]
impl AccountCache for SecureDirCache {
    type EA = io::Error;

    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, io::Error> {
        self.read(file_name("account", contact, directory_url))
            .await
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), io::Error> {
        self.write(
            file_name("account", contact, directory_url),
            account.to_vec(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_in(dir: &Path) -> SecureDirCache {
        SecureDirCache {
            dir: dir.to_owned(),
            status: CertStatus::new(),
            loaded: Default::default(),
            writes: CacheWrites::default(),
        }
    }

    #[tokio::test]
    async fn a_cached_certificate_is_not_ready_before_it_is_deployed() {
        // rustls-acme reads the cache, then parses and deploys; a file that does not
        // parse is never served, so reading it must not make the edge ready.
        let root = tempfile::tempdir().unwrap();
        let cache = cache_in(root.path());
        let (domains, dir) = (vec!["a.test".to_string()], "https://x/dir");
        let pem = rcgen::generate_simple_self_signed(domains.clone())
            .unwrap()
            .cert
            .pem();
        fs::write(root.path().join(file_name("cert", &domains, dir)), &pem).unwrap();
        assert!(cache.load_cert(&domains, dir).await.unwrap().is_some());
        assert_eq!(cache.status.not_after(), None);
        assert!(cache.loaded.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn an_aborted_store_still_finishes_its_write_before_shutdown_returns() {
        let root = tempfile::tempdir().unwrap();
        let cache = Arc::new(cache_in(root.path()));
        let writes = cache.writes.clone();
        let (domains, dir) = (vec!["a.test".to_string()], "https://x/dir");
        let big = vec![b'x'; 8 << 20];
        let task = tokio::spawn({
            let cache = cache.clone();
            let domains = domains.clone();
            async move { cache.store_cert(&domains, dir, &big).await }
        });
        // Let the write start, then abort the task as shutdown aborts the ACME task.
        while writes.0.try_lock().is_ok() && !task.is_finished() {
            tokio::task::yield_now().await;
        }
        task.abort();
        writes.finished().await;
        let stored = fs::read(root.path().join(file_name("cert", &domains, dir))).unwrap();
        assert_eq!(stored.len(), 8 << 20);
    }

    #[tokio::test]
    async fn cache_dir_is_private_and_files_are_0600() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("acme");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        prepare_cache_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let cache = cache_in(&dir);
        let contact = vec!["mailto:a@example.com".to_string()];
        assert!(
            cache
                .load_account(&contact, "https://x/dir")
                .await
                .unwrap()
                .is_none()
        );
        cache
            .store_account(&contact, "https://x/dir", b"key")
            .await
            .unwrap();
        assert_eq!(
            cache
                .load_account(&contact, "https://x/dir")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"key"[..])
        );
        for entry in fs::read_dir(&dir).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_bad_ca_bundle_is_named() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("ca.pem");
        fs::write(&path, "nothing here").unwrap();
        let err = client_config(&path).unwrap_err().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let file = root.path().join("plain-file");
        fs::write(&file, "").unwrap();
        let err = prepare_cache_dir(&file).unwrap_err().to_string();
        assert!(err.contains("acme.cache_dir"), "{err}");
    }
}
