//! One watcher for every secret file (API keys, JWT keys, TLS certificate and key).
//!
//! Secrets change in several ways, and each must be seen:
//! - in-place writes (Docker Compose bind-mounts a single file: a rename on the host
//!   never reaches the container, a write does);
//! - atomic rename into place;
//! - Kubernetes secret volumes, where `..data` is a symlink swapped to a new
//!   timestamped directory (so the *parent directory* is watched and links are
//!   re-resolved on every read);
//! - mounts that send no events at all: a periodic re-read compares content hashes.
//!
//! `SIGHUP` forces a reload. A reload validates the new content before publishing it;
//! when validation fails the last good value stays in force and the error is logged
//! and counted. Content that failed is not retried until it changes again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Something reloaded from files (a certificate and its key, a keys file, a key
/// ring). The one interface every reloadable component implements: validate the
/// new content, publish it only when valid — so a broken file keeps the last good
/// value in force — and say what is now in force. The watcher logs each outcome and
/// counts it in `mcp_edge_secret_reloads_total{kind, result}`.
#[async_trait::async_trait]
pub trait Reload: Send + Sync + 'static {
    /// The metric's and the log's name for it (`api_keys`, `tls_certificate`, …).
    fn kind(&self) -> &'static str;
    /// The files it is read from; a change to any of them triggers a reload.
    fn files(&self) -> Vec<PathBuf>;
    /// Read, validate and publish; `Ok` is a one-line summary for the log.
    async fn reload(&self) -> Result<String, ReloadError>;
}

/// Why new content was refused (the last good value stays in force).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReloadError(Box<dyn std::error::Error + Send + Sync>);

impl ReloadError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> ReloadError {
        ReloadError(Box::new(error))
    }
}

/// A group of files reloaded together, as the watcher holds it.
pub type Secret = Arc<dyn Reload>;

/// Reload outcomes for one kind, for tests and metrics.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

struct Entry {
    secret: Secret,
    files: Vec<PathBuf>,
    hashes: Mutex<Vec<Option<[u8; 32]>>>,
    counts: Arc<ReloadCounts>,
}

fn hash_file(path: &Path) -> Option<[u8; 32]> {
    // `read` follows symlinks, so a swapped `..data` link is re-resolved every time.
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

impl Entry {
    fn current_hashes(&self) -> Vec<Option<[u8; 32]>> {
        self.files.iter().map(|f| hash_file(f)).collect()
    }

    async fn check(&self, force: bool) {
        let mut now = self.current_hashes();
        {
            let seen = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *seen == now {
                return;
            }
        }
        // Let a writer finish (an in-place write can be seen half done, and half a
        // keys file may even parse): act once two reads 50 ms apart agree.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let again = self.current_hashes();
            if again == now {
                break;
            }
            now = again;
        }
        // Remember this content whatever the outcome: a broken file is reported once,
        // and retried when it changes (a half-written file will change again).
        *self.hashes.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let kind = self.secret.kind();
        match self.secret.reload().await {
            Ok(summary) => {
                self.counts.ok.fetch_add(1, Ordering::Relaxed);
                crate::metrics::secret_reload(kind, true);
                tracing::info!(kind, %summary, "secret reloaded");
            }
            Err(error) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                crate::metrics::secret_reload(kind, false);
                tracing::error!(kind, %error, "secret reload failed; keeping the last good value");
            }
        }
    }
}

/// Dropping it stops watching.
pub struct SecretsWatcher {
    task: tokio::task::JoinHandle<()>,
    counts: Vec<(&'static str, Arc<ReloadCounts>)>,
    force: mpsc::UnboundedSender<bool>,
}

impl Drop for SecretsWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SecretsWatcher {
    /// Reload outcomes of one kind (`api_keys`, `jwt_keys`, `tls_certificate`).
    pub fn counts(&self, kind: &str) -> Option<Arc<ReloadCounts>> {
        self.counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| c.clone())
    }

    /// Re-read and republish everything now, as SIGHUP does.
    pub fn reload_all(&self) {
        let _ = self.force.send(true);
    }

    /// Start watching. Current contents are taken as already loaded.
    pub fn spawn(secrets: Vec<Secret>, poll_interval: Duration) -> SecretsWatcher {
        let entries: Vec<Arc<Entry>> = secrets
            .into_iter()
            .map(|secret| {
                let e = Entry {
                    hashes: Mutex::new(Vec::new()),
                    counts: Arc::new(ReloadCounts::default()),
                    files: secret.files(),
                    secret,
                };
                *e.hashes.lock().unwrap_or_else(|p| p.into_inner()) = e.current_hashes();
                Arc::new(e)
            })
            .collect();
        let counts = entries
            .iter()
            .map(|e| (e.secret.kind(), e.counts.clone()))
            .collect();
        let dirs: BTreeSet<PathBuf> = entries
            .iter()
            .flat_map(|e| e.files.iter())
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d
                }
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel::<bool>();
        let force = tx.clone();
        // Armed before returning, so no change after `spawn` can be missed.
        let watcher = arm_watcher(&dirs, tx);
        let task = tokio::spawn(run(entries, dirs, poll_interval, watcher, rx));
        SecretsWatcher {
            task,
            counts,
            force,
        }
    }
}

fn arm_watcher(
    dirs: &BTreeSet<PathBuf>,
    events: mpsc::UnboundedSender<bool>,
) -> Option<notify::RecommendedWatcher> {
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = events.send(false);
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch secret files; relying on polling");
                None
            }
        };
    // Watch the directories, not the files: renames and `..data` swaps replace the
    // file's inode, which would silently end a watch on the file itself.
    if let Some(w) = &mut watcher {
        for dir in dirs {
            if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory yet");
            }
        }
    }
    watcher
}

async fn run(
    entries: Vec<Arc<Entry>>,
    dirs: BTreeSet<PathBuf>,
    poll_interval: Duration,
    mut watcher: Option<notify::RecommendedWatcher>,
    mut rx: mpsc::UnboundedReceiver<bool>,
) {
    let arm = |watcher: &mut Option<notify::RecommendedWatcher>| {
        if let Some(w) = watcher {
            for dir in &dirs {
                let _ = w.watch(dir, RecursiveMode::NonRecursive);
            }
        }
    };
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let force = tokio::select! {
            Some(force) = rx.recv() => {
                // Let a burst of events (write + rename + chmod) settle, then act once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut force = force;
                while let Ok(f) = rx.try_recv() {
                    force |= f;
                }
                force
            }
            _ = tick.tick() => {
                // Re-arm: a watched directory that was removed and recreated needs a new watch.
                arm(&mut watcher);
                false
            }
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("SIGHUP: reloading all secrets");
                true
            }
        };
        for entry in &entries {
            entry.check(force).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        file: PathBuf,
        seen: Arc<Mutex<Vec<String>>>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("invalid")]
    struct Invalid;

    #[async_trait::async_trait]
    impl Reload for Counting {
        fn kind(&self) -> &'static str {
            "test"
        }

        fn files(&self) -> Vec<PathBuf> {
            vec![self.file.clone()]
        }

        async fn reload(&self) -> Result<String, ReloadError> {
            let text = std::fs::read_to_string(&self.file).map_err(ReloadError::new)?;
            if text.starts_with("bad") {
                return Err(ReloadError::new(Invalid));
            }
            self.seen.lock().unwrap().push(text.clone());
            Ok(text)
        }
    }

    fn counting_secret(file: PathBuf, seen: Arc<Mutex<Vec<String>>>) -> Secret {
        Arc::new(Counting { file, seen })
    }

    async fn wait_for(seen: &Arc<Mutex<Vec<String>>>, want: &str) -> bool {
        for _ in 0..100 {
            if seen.lock().unwrap().iter().any(|s| s == want) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn in_place_writes_and_renames_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "v1").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        // A long poll interval: these must come from file events.
        let w = SecretsWatcher::spawn(
            vec![counting_secret(file.clone(), seen.clone())],
            Duration::from_secs(3600),
        );
        std::fs::write(&file, "v2").unwrap();
        assert!(wait_for(&seen, "v2").await, "in-place write");
        let tmp = dir.path().join(".secret.tmp");
        std::fs::write(&tmp, "v3").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert!(wait_for(&seen, "v3").await, "atomic rename");
        std::fs::write(&file, "bad content").unwrap();
        for _ in 0..40 {
            if w.counts("test").unwrap().failed.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(w.counts("test").unwrap().failed.load(Ordering::Relaxed), 1);
        drop(w);
    }

    #[tokio::test]
    async fn polling_catches_what_events_miss_and_reload_all_forces() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "v1").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let w = SecretsWatcher::spawn(
            vec![counting_secret(file.clone(), seen.clone())],
            Duration::from_millis(200),
        );
        w.reload_all();
        assert!(
            wait_for(&seen, "v1").await,
            "forced reload of unchanged content"
        );
    }
}
