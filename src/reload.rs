//! The one reload interface, and the watcher that drives every reloadable thing.
//!
//! What triggers a reload depends on the thing ([`Trigger`]):
//! - **files** (API keys, JWT keys, the TLS certificate and key, the session key
//!   ring). Files change in several ways, and each must be seen:
//!   - in-place writes (Docker Compose bind-mounts a single file: a rename on the
//!     host never reaches the container, a write does);
//!   - atomic rename into place;
//!   - Kubernetes secret volumes, where `..data` is a symlink swapped to a new
//!     timestamped directory (so the *parent directory* is watched and links are
//!     re-resolved on every read);
//!   - mounts that send no events at all: a periodic re-read compares content hashes.
//! - **a period** (the remote JWKS URL): refetched on a timer.
//! - **its own follower** (the docs directory, which the docs index follows
//!   recursively and updates piece by piece): it reports each update here.
//!
//! `SIGHUP` forces every kind. A reload validates the new content before publishing
//! it; when validation fails the last good value stays in force. Every outcome,
//! whatever triggered it, goes through [`Report::outcome`]: counted, recorded in
//! `mcp_edge_secret_reloads_total{kind, result}` and logged. File content that failed
//! is not retried until it changes again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What makes a reloadable thing reload (besides `SIGHUP`, which forces every kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A change to any of these files.
    Files(Vec<PathBuf>),
    /// A timer: a remote source that sends no events.
    Every(Duration),
    /// Its own follower, started by [`Reload::follow`], reporting each update.
    Follows,
}

/// Something the edge reloads while it runs (a certificate and its key, a keys
/// file, a key ring, a JWKS URL, the docs index). The one interface every
/// reloadable component implements: validate the new content, publish it only when
/// valid — so a broken source keeps the last good value in force — and say what is
/// now in force.
#[async_trait::async_trait]
pub trait Reload: Send + Sync + 'static {
    /// The metric's and the log's name for it (`api_keys`, `tls_certificate`, …).
    fn kind(&self) -> &'static str;
    /// What triggers a reload.
    fn trigger(&self) -> Trigger;
    /// Read, validate and publish; `Ok` is a one-line summary for the log.
    async fn reload(&self) -> Result<String, ReloadError>;
    /// For [`Trigger::Follows`]: start following the source, sending each update's
    /// outcome to `report`; dropping the returned guard stops following. `None` when
    /// it cannot follow (then only `SIGHUP` reloads it).
    fn follow(&self, report: Report) -> Option<Follower> {
        let _ = report;
        None
    }
}

/// Keeps a [`Trigger::Follows`] follower running; dropping it stops the follower.
pub type Follower = Box<dyn Send + Sync>;

/// Why new content was refused (the last good value stays in force).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReloadError(Box<dyn std::error::Error + Send + Sync>);

impl ReloadError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> ReloadError {
        ReloadError(Box::new(error))
    }
}

/// A reloadable thing, as the watcher holds it.
pub type Reloadable = Arc<dyn Reload>;

/// Reload outcomes for one kind, for tests, metrics and the status page.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// The last outcome (none since start: what was loaded at start is in force).
    pub last: Mutex<Option<LastReload>>,
}

/// One reload's outcome: when, whether it was published, and the log's summary or
/// error (which name files and lines, never secret values).
#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: std::time::SystemTime,
    pub ok: bool,
    pub message: String,
}

impl ReloadCounts {
    /// The last outcome, if any.
    pub fn last(&self) -> Option<LastReload> {
        crate::sync::lock(&self.last).clone()
    }

    fn record(&self, ok: bool, message: String) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        *crate::sync::lock(&self.last) = Some(LastReload {
            at: std::time::SystemTime::now(),
            ok,
            message,
        });
    }
}

/// Where the outcomes of one kind's reloads go: the one place that counts them,
/// records the metric and logs them.
#[derive(Clone)]
pub struct Report {
    kind: &'static str,
    counts: Arc<ReloadCounts>,
}

impl Report {
    /// Count, record and log one reload's outcome.
    pub fn outcome(&self, outcome: Result<String, ReloadError>) {
        let kind = self.kind;
        match outcome {
            Ok(summary) => {
                crate::metrics::secret_reload(kind, true);
                tracing::info!(kind, %summary, "secret reloaded");
                self.counts.record(true, summary);
            }
            Err(error) => {
                crate::metrics::secret_reload(kind, false);
                tracing::error!(kind, %error, "secret reload failed; keeping the last good value");
                self.counts.record(false, error.to_string());
            }
        }
    }
}

struct Entry {
    reloadable: Reloadable,
    trigger: Trigger,
    hashes: Mutex<Vec<Option<[u8; 32]>>>,
    report: Report,
}

fn hash_file(path: &Path) -> Option<[u8; 32]> {
    // `read` follows symlinks, so a swapped `..data` link is re-resolved every time.
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

impl Entry {
    fn new(reloadable: Reloadable) -> Entry {
        let entry = Entry {
            report: Report {
                kind: reloadable.kind(),
                counts: Arc::new(ReloadCounts::default()),
            },
            hashes: Mutex::new(Vec::new()),
            trigger: reloadable.trigger(),
            reloadable,
        };
        *crate::sync::lock(&entry.hashes) = entry.current_hashes();
        entry
    }

    /// The watched files (none unless triggered by files).
    fn files(&self) -> &[PathBuf] {
        match &self.trigger {
            Trigger::Files(files) => files,
            Trigger::Every(_) | Trigger::Follows => &[],
        }
    }

    fn current_hashes(&self) -> Vec<Option<[u8; 32]>> {
        self.files().iter().map(|f| hash_file(f)).collect()
    }

    async fn reload_now(&self) {
        self.report.outcome(self.reloadable.reload().await);
    }

    /// Reload when forced, or when a watched file's content changed.
    async fn check(&self, force: bool) {
        if self.files().is_empty() {
            // Timers and followers trigger these themselves; only a force reaches here.
            if force {
                self.reload_now().await;
            }
            return;
        }
        let mut now = self.current_hashes();
        {
            let seen = crate::sync::lock(&self.hashes);
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
        *crate::sync::lock(&self.hashes) = now;
        self.reload_now().await;
    }
}

/// Drives every reloadable thing: file watches and polling, timers, followers and
/// `SIGHUP`. Dropping it stops them all.
pub struct Reloader {
    tasks: Vec<JoinHandle<()>>,
    counts: Vec<(&'static str, Arc<ReloadCounts>)>,
    force: mpsc::UnboundedSender<bool>,
    _followers: Vec<Follower>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Reloader {
    /// Reload outcomes of one kind (`api_keys`, `jwks`, `docs_index`, …).
    pub fn counts(&self, kind: &str) -> Option<Arc<ReloadCounts>> {
        self.counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| c.clone())
    }

    /// Every kind with its outcomes, in the order they were given.
    pub fn all(&self) -> Vec<(&'static str, Arc<ReloadCounts>)> {
        self.counts.clone()
    }

    /// Reload every kind now, as SIGHUP does.
    pub fn reload_all(&self) {
        let _ = self.force.send(true);
    }

    /// Start driving them. What is in force now is taken as already loaded.
    pub fn spawn(reloadables: Vec<Reloadable>, poll_interval: Duration) -> Reloader {
        let entries: Vec<Arc<Entry>> = reloadables
            .into_iter()
            .map(|r| Arc::new(Entry::new(r)))
            .collect();
        let counts = entries
            .iter()
            .map(|e| (e.report.kind, e.report.counts.clone()))
            .collect();
        let followers = entries
            .iter()
            .filter(|e| e.trigger == Trigger::Follows)
            .filter_map(|e| e.reloadable.follow(e.report.clone()))
            .collect();
        let mut tasks: Vec<JoinHandle<()>> = entries.iter().filter_map(spawn_timer).collect();
        let dirs = watched_dirs(&entries);
        let (tx, rx) = mpsc::unbounded_channel::<bool>();
        let force = tx.clone();
        // Armed before returning, so no change after `spawn` can be missed.
        let watcher = (!dirs.is_empty()).then(|| arm_watcher(&dirs, tx)).flatten();
        tasks.push(tokio::spawn(run(entries, dirs, poll_interval, watcher, rx)));
        Reloader {
            tasks,
            counts,
            force,
            _followers: followers,
        }
    }
}

/// The timer of a [`Trigger::Every`] entry; its first tick is one period from now.
fn spawn_timer(entry: &Arc<Entry>) -> Option<JoinHandle<()>> {
    let Trigger::Every(period) = entry.trigger else {
        return None;
    };
    if period.is_zero() {
        tracing::warn!(
            kind = entry.report.kind,
            "reload period is zero; not reloading on a timer"
        );
        return None;
    }
    let entry = entry.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            entry.reload_now().await;
        }
    }))
}

/// The parent directories of every watched file.
fn watched_dirs(entries: &[Arc<Entry>]) -> BTreeSet<PathBuf> {
    entries
        .iter()
        .flat_map(|e| e.files().iter())
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect()
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

        fn trigger(&self) -> Trigger {
            Trigger::Files(vec![self.file.clone()])
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

    fn counting_secret(file: PathBuf, seen: Arc<Mutex<Vec<String>>>) -> Reloadable {
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
        let w = Reloader::spawn(
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
        let w = Reloader::spawn(
            vec![counting_secret(file.clone(), seen.clone())],
            Duration::from_millis(200),
        );
        w.reload_all();
        assert!(
            wait_for(&seen, "v1").await,
            "forced reload of unchanged content"
        );
    }

    /// A source on a timer that fails from its second read on, and follows itself.
    struct Remote {
        reads: AtomicU64,
        trigger: Trigger,
    }

    #[async_trait::async_trait]
    impl Reload for Remote {
        fn kind(&self) -> &'static str {
            "remote"
        }

        fn trigger(&self) -> Trigger {
            self.trigger.clone()
        }

        async fn reload(&self) -> Result<String, ReloadError> {
            match self.reads.fetch_add(1, Ordering::Relaxed) {
                0 => Ok("first".into()),
                _ => Err(ReloadError::new(Invalid)),
            }
        }

        fn follow(&self, report: Report) -> Option<Follower> {
            report.outcome(Ok("followed".into()));
            report.outcome(Err(ReloadError::new(Invalid)));
            Some(Box::new(()))
        }
    }

    async fn counted(w: &Reloader, kind: &str, ok: u64, failed: u64) -> bool {
        let counts = w.counts(kind).unwrap();
        for _ in 0..100 {
            if counts.ok.load(Ordering::Relaxed) >= ok
                && counts.failed.load(Ordering::Relaxed) >= failed
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn timers_reload_and_count_failures() {
        let remote = Arc::new(Remote {
            reads: AtomicU64::new(0),
            trigger: Trigger::Every(Duration::from_millis(50)),
        });
        let w = Reloader::spawn(vec![remote.clone()], Duration::from_secs(3600));
        assert!(
            counted(&w, "remote", 1, 2).await,
            "first read ok, then failures"
        );
        drop(w);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reads = remote.reads.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            remote.reads.load(Ordering::Relaxed),
            reads,
            "dropping stops the timer"
        );
    }

    #[tokio::test]
    async fn followers_report_and_reload_all_forces_them() {
        let remote = Arc::new(Remote {
            reads: AtomicU64::new(0),
            trigger: Trigger::Follows,
        });
        let w = Reloader::spawn(vec![remote.clone()], Duration::from_secs(3600));
        let counts = w.counts("remote").unwrap();
        assert_eq!(counts.ok.load(Ordering::Relaxed), 1);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 1);
        w.reload_all();
        assert!(counted(&w, "remote", 2, 1).await, "forced reload");
        assert_eq!(remote.reads.load(Ordering::Relaxed), 1);
    }
}
