//! Following the root directory: file-system events are batched over a
//! debounce window and applied to the index on a thread of their own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tracing::{debug, info, warn};

use super::DocsError;
use super::index::DocsIndex;

/// Quiet period that ends a burst of file-system events.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(200);
/// Upper bound on how long a continuous stream of events delays an update.
const MAX_BATCH_DELAY: Duration = Duration::from_secs(2);

impl DocsIndex {
    /// Start following changes under the root. Events are debounced (~200 ms)
    /// and only the affected files/directories are re-indexed; a full rescan
    /// happens when the watcher reports lost events or an error.
    ///
    /// Indexing runs on a dedicated std thread, so this is safe to call from
    /// inside a tokio runtime. Dropping the returned guard stops watching
    /// (the thread exits after finishing any batch in progress). The thread
    /// only holds a weak reference, so it never keeps the index alive.
    pub fn watch(self: &Arc<Self>) -> Result<DocsWatcher, DocsError> {
        self.follow(|applied| {
            if let Err(e) = applied {
                warn!(error = %e, "docs: failed to apply file changes");
            }
        })
    }

    /// [`DocsIndex::watch`], handing the outcome of each batch that changed something
    /// to `report`: a summary, or why it was not applied (the index then keeps its
    /// last content).
    pub fn follow(
        self: &Arc<Self>,
        report: impl Fn(Result<String, DocsError>) + Send + 'static,
    ) -> Result<DocsWatcher, DocsError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let event_tx = tx.clone();
        // Don't let the watcher follow symlinked directories out of the root.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = RecommendedWatcher::new(
            move |res: notify::Result<notify::Event>| {
                // A send error only means the watcher is shutting down.
                let _ = event_tx.send(Msg::Event(res));
            },
            config,
        )?;
        watcher.watch(self.root(), RecursiveMode::Recursive)?;

        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("docs-watch".into())
            .spawn(move || watch_loop(weak, rx, report))?;
        debug!(root = %self.root().display(), "watching docs directory");
        Ok(DocsWatcher {
            _watcher: watcher,
            tx,
        })
    }

    /// `None` when the batch changed nothing in the index.
    fn apply_batch(&self, batch: Batch) -> Option<Result<String, DocsError>> {
        if batch.rescan {
            info!("docs: full rescan");
            return Some(
                self.reindex_all()
                    .map(|()| format!("rescanned: {} document(s) indexed", self.len())),
            );
        }
        match self.sync_paths(&batch.paths) {
            Ok(0) => None,
            Ok(changes) => Some(Ok(format!(
                "{changes} change(s) applied: {} document(s) indexed",
                self.len()
            ))),
            Err(e) => Some(Err(e)),
        }
    }
}

/// Guard returned by [`DocsIndex::watch`]; dropping it stops watching.
pub struct DocsWatcher {
    // Dropped after `Drop::drop` has signalled the thread.
    _watcher: RecommendedWatcher,
    tx: mpsc::Sender<Msg>,
}

impl fmt::Debug for DocsWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocsWatcher").finish_non_exhaustive()
    }
}

impl Drop for DocsWatcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

enum Msg {
    Event(notify::Result<notify::Event>),
    Stop,
}

/// Changes accumulated over one debounce window.
#[derive(Default)]
struct Batch {
    /// absolute path -> whether a directory at that path must be rescanned.
    paths: BTreeMap<PathBuf, bool>,
    rescan: bool,
}

impl Batch {
    fn add(&mut self, root: &Path, res: notify::Result<notify::Event>) {
        let event = match res {
            Ok(ev) => ev,
            Err(e) => {
                // We can't know what was missed.
                warn!(error = %e, "docs: watcher error, will rescan");
                self.rescan = true;
                return;
            }
        };
        if event.need_rescan() {
            self.rescan = true;
            return;
        }
        let walk_dirs = match event.kind {
            // Opens/reads don't change anything; close-after-write does.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Access(_) => return,
            EventKind::Modify(ModifyKind::Metadata(_)) => false,
            _ => true,
        };
        for path in event.paths {
            if path == root {
                // The root itself was replaced/renamed: ambiguous.
                if walk_dirs {
                    self.rescan = true;
                }
                continue;
            }
            let e = self.paths.entry(path).or_insert(false);
            *e |= walk_dirs;
        }
    }
}

fn watch_loop(
    index: Weak<DocsIndex>,
    rx: mpsc::Receiver<Msg>,
    report: impl Fn(Result<String, DocsError>),
) {
    let Some(root) = index.upgrade().map(|i| i.root().to_path_buf()) else {
        return;
    };
    loop {
        let mut batch = Batch::default();
        match rx.recv() {
            Ok(Msg::Event(ev)) => batch.add(&root, ev),
            Ok(Msg::Stop) | Err(_) => return,
        }
        let started = Instant::now();
        loop {
            let left = MAX_BATCH_DELAY.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(DEBOUNCE.min(left)) {
                Ok(Msg::Event(ev)) => batch.add(&root, ev),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if !batch.rescan && batch.paths.is_empty() {
            continue;
        }
        let Some(index) = index.upgrade() else {
            return;
        };
        if let Some(applied) = index.apply_batch(batch) {
            report(applied);
        }
    }
}

/// The docs index as one of the edge's reloadable things (`docs_index`): it follows
/// the directory itself, and `SIGHUP` rescans it whole. An update or a rescan that
/// fails (the root gone or unreadable) leaves the last index in force.
pub struct IndexReload {
    index: Arc<DocsIndex>,
}

impl IndexReload {
    pub fn new(index: Arc<DocsIndex>) -> IndexReload {
        IndexReload { index }
    }
}

#[async_trait::async_trait]
impl crate::reload::Reload for IndexReload {
    fn kind(&self) -> &'static str {
        "docs_index"
    }

    fn trigger(&self) -> crate::reload::Trigger {
        crate::reload::Trigger::Follows
    }

    async fn reload(&self) -> Result<String, crate::reload::ReloadError> {
        use crate::reload::ReloadError;
        let index = self.index.clone();
        let indexed =
            tokio::task::spawn_blocking(move || index.reindex_all().map(|()| index.len()))
                .await
                .map_err(ReloadError::new)?
                .map_err(ReloadError::new)?;
        Ok(format!("rescanned: {indexed} document(s) indexed"))
    }

    fn follow(&self, report: crate::reload::Report) -> Option<crate::reload::Follower> {
        let follower = self.index.follow(move |applied| {
            report.outcome(applied.map_err(crate::reload::ReloadError::new));
        });
        match follower {
            Ok(watcher) => Some(Box::new(watcher)),
            Err(e) => {
                warn!(error = %e, "cannot follow docs changes; the index will not update");
                None
            }
        }
    }
}
