//! Full-text index of the documentation files under one directory.
//!
//! Documents (Markdown, reStructuredText, AsciiDoc, plain text) are indexed
//! into an in-RAM tantivy index with BM25 ranking. [`DocsIndex::watch`] keeps
//! the index in sync with the directory while the server runs.
//!
//! Design notes:
//! - One `IndexWriter` behind a `Mutex`: tantivy allows a single writer, and
//!   the mutex also serialises "scan disk + apply" so a full rescan and an
//!   incremental update can never interleave and resurrect stale content.
//! - The reader uses `ReloadPolicy::Manual` and is reloaded right after each
//!   commit, so a search issued after an update has been applied sees it.
//! - Every path that reaches the disk is canonicalised and checked against the
//!   canonical root, both when indexing and in [`DocsIndex::read`], so
//!   symlinks cannot be used to read or index files outside the root.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Read as _;
use std::panic::AssertUnwindSafe;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, Query, QueryParser};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use tracing::{debug, info, warn};
use walkdir::WalkDir;

/// Files larger than this are neither indexed nor returned by `read`.
pub const MAX_DOC_BYTES: u64 = 2 * 1024 * 1024;
/// Extensions (lower-case, no dot) of the files that are treated as documents.
pub const DOC_EXTENSIONS: &[&str] = &["md", "markdown", "mdx", "txt", "rst", "adoc"];
/// Directory names never descended into: build output and dependency trees
/// are huge and rarely what a user means by "the docs".
const SKIPPED_DIRS: &[&str] = &[
    "target",
    "node_modules",
    "dist",
    "build",
    "__pycache__",
    "venv",
    ".venv",
];
/// Hard cap on `search` results.
const MAX_LIMIT: usize = 50;
/// Snippet length in characters.
const SNIPPET_CHARS: usize = 200;
/// Longest heading/first line accepted as a title for .rst/.txt files.
const MAX_TITLE_CHARS: usize = 100;
/// Queries longer than this are rejected: the query grammar is recursive and
/// pathological input (thousands of nested parentheses) must not be able to
/// exhaust a worker thread's stack.
const MAX_QUERY_BYTES: usize = 1024;
/// tantivy's query grammar backtracks exponentially on nested parentheses
/// (~20 unclosed `(` take seconds, a few hundred overflow the stack), so
/// parentheses nested deeper than this are blanked before parsing.
const MAX_PAREN_DEPTH: usize = 4;
/// Quiet period that ends a burst of file-system events.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Upper bound on how long a continuous stream of events delays an update.
const MAX_BATCH_DELAY: Duration = Duration::from_secs(2);
/// Writer memory budget; tantivy requires at least 15 MB per thread.
const WRITER_MEMORY_BYTES: usize = 32_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("document not found: {0}")]
    NotFound(String),
    #[error("path is outside the documents root: {0}")]
    OutsideRoot(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("document too large: {path} is {bytes} bytes (limit {MAX_DOC_BYTES})")]
    TooLarge { path: String, bytes: u64 },
    #[error("not a directory: {}", .0.display())]
    NotADirectory(PathBuf),
    #[error("invalid query: {0}")]
    QueryParse(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("index error: {0}")]
    Index(String),
    #[error("file watcher error: {0}")]
    Watch(String),
}

impl From<tantivy::TantivyError> for DocsError {
    fn from(e: tantivy::TantivyError) -> Self {
        DocsError::Index(e.to_string())
    }
}

impl From<notify::Error> for DocsError {
    fn from(e: notify::Error) -> Self {
        DocsError::Watch(e.to_string())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchHit {
    /// Path relative to the root, '/'-separated; valid input for `read`.
    pub path: String,
    pub title: String,
    /// Plain text (whitespace collapsed) of at most ~200 characters; matched
    /// terms are wrapped in Markdown bold markers (`**term**`). When no term
    /// matched the body (e.g. a title-only match) it is the start of the body.
    pub snippet: String,
    /// BM25 score; only meaningful relative to other hits of the same query.
    pub score: f32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DocEntry {
    pub path: String,
    pub title: String,
    pub bytes: u64,
}

#[derive(Clone, Copy)]
struct Fields {
    path: Field,
    title: Field,
    body: Field,
}

/// A document loaded from disk, ready to be indexed.
struct LoadedDoc {
    rel: String,
    title: String,
    body: String,
    bytes: u64,
}

/// One change to apply to the index, in order.
enum Op {
    Upsert(LoadedDoc),
    Remove(String),
}

pub struct DocsIndex {
    root: PathBuf,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    parser: QueryParser,
    /// path -> entry, mirrors the committed index; only modified while the
    /// writer lock is held so it stays consistent with it.
    entries: RwLock<BTreeMap<String, DocEntry>>,
}

impl fmt::Debug for DocsIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocsIndex")
            .field("root", &self.root)
            .field("docs", &self.len())
            .finish_non_exhaustive()
    }
}

impl DocsIndex {
    /// Scan `root` and index every document. Blocking (call from
    /// `spawn_blocking`). Errors if `root` is not a readable directory.
    pub fn build(root: &Path) -> Result<Arc<Self>, DocsError> {
        let meta = fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(DocsError::NotADirectory(root.to_path_buf()));
        }
        let root = fs::canonicalize(root)?;
        // Fail early on an unreadable directory rather than silently serving
        // an empty index.
        fs::read_dir(&root)?;

        let mut builder = Schema::builder();
        // English stemming so "configure" also finds "configuration".
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let fields = Fields {
            path: builder.add_text_field("path", STRING | STORED),
            title: builder.add_text_field("title", text.clone()),
            body: builder.add_text_field("body", text),
        };
        let index = Index::create_in_ram(builder.build());
        // One indexing thread: the machine is small and batches are small.
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.body]);
        parser.set_field_boost(fields.title, 2.0);

        let this = Arc::new(DocsIndex {
            root,
            fields,
            reader,
            writer: Mutex::new(writer),
            parser,
            entries: RwLock::new(BTreeMap::new()),
        });
        this.reindex_all()?;
        info!(root = %this.root.display(), docs = this.len(), "docs index built");
        Ok(this)
    }

    /// The canonicalized root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of indexed documents.
    pub fn len(&self) -> usize {
        read_lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// BM25-ranked hits, best first. `limit` is clamped to `1..=50`.
    ///
    /// Query syntax errors do not fail: the query is then parsed leniently so
    /// arbitrary user text works. An empty query is a `QueryParse` error, as
    /// is one longer than 1024 bytes.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>, DocsError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(DocsError::QueryParse("query is empty".into()));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(DocsError::QueryParse(format!(
                "query is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let limit = limit.clamp(1, MAX_LIMIT);
        let parsed = self.parse(query);
        let searcher = self.reader.searcher();
        let top = searcher.search(&*parsed, &TopDocs::with_limit(limit))?;
        let mut snippets = SnippetGenerator::create(&searcher, &*parsed, self.fields.body)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let terms = body_terms(&*parsed, self.fields.body);

        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let path = stored_str(&doc, self.fields.path);
            let title = stored_str(&doc, self.fields.title);
            let body = doc
                .get_first(self.fields.body)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let snippet = snippets.snippet(snippet_window(body, &terms));
            let snippet = if snippet.is_empty() {
                head_snippet(body)
            } else {
                render_snippet(snippet.fragment(), snippet.highlighted())
            };
            hits.push(SearchHit {
                path,
                title,
                snippet,
                score,
            });
        }
        Ok(hits)
    }

    /// Parse user text, never failing: strict syntax first, then tantivy's
    /// lenient parser, then (if the grammar panics, which tantivy 0.25 does
    /// on some inputs) the bare words of the query.
    fn parse(&self, query: &str) -> Box<dyn Query> {
        let query = sanitize_query(query);
        let attempt =
            std::panic::catch_unwind(AssertUnwindSafe(|| match self.parser.parse_query(&query) {
                Ok(q) => q,
                Err(strict_err) => {
                    let (q, errs) = self.parser.parse_query_lenient(&query);
                    debug!(%strict_err, lenient_errors = errs.len(), "query parsed leniently");
                    q
                }
            }));
        match attempt {
            Ok(q) => q,
            Err(_) => {
                warn!(query = %query, "docs: query parser panicked; searching plain words");
                let words: String = query
                    .chars()
                    .map(|c| if c.is_alphanumeric() { c } else { ' ' })
                    .collect();
                // Only words and spaces: nothing left for the grammar to trip on.
                let (q, _) = self.parser.parse_query_lenient(&words);
                q
            }
        }
    }

    /// Text of one document by its relative path as returned by
    /// `search`/`list` (e.g. `guide/setup.md`), read fresh from disk.
    ///
    /// Refuses absolute paths, `..` components and NUL bytes, files whose
    /// canonical target (symlinks followed) is outside the root, and
    /// anything that would not be indexed (wrong extension, hidden or
    /// build/dependency directories, over 2 MiB).
    pub fn read(&self, rel_path: &str) -> Result<String, DocsError> {
        let rel = parse_rel_path(rel_path)?;
        if !has_doc_extension(&rel) {
            return Err(DocsError::InvalidPath(format!(
                "{rel_path}: only {} files can be read",
                DOC_EXTENSIONS.join("/")
            )));
        }
        if in_skipped_place(&rel) {
            // Hidden and build/dependency files are not part of the corpus;
            // report them as absent rather than confirming they exist.
            return Err(DocsError::NotFound(rel_path.to_string()));
        }
        let (canon, _) = self.resolve(&rel, rel_path)?;
        read_capped(&canon, rel_path)
    }

    /// All indexed documents sorted by path.
    pub fn list(&self) -> Vec<DocEntry> {
        read_lock(&self.entries).values().cloned().collect()
    }

    /// Start following changes under the root. Events are debounced (~200 ms)
    /// and only the affected files/directories are re-indexed; a full rescan
    /// happens when the watcher reports lost events or an error.
    ///
    /// Indexing runs on a dedicated std thread, so this is safe to call from
    /// inside a tokio runtime. Dropping the returned guard stops watching
    /// (the thread exits after finishing any batch in progress). The thread
    /// only holds a weak reference, so it never keeps the index alive.
    pub fn watch(self: &Arc<Self>) -> Result<DocsWatcher, DocsError> {
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
        watcher.watch(&self.root, RecursiveMode::Recursive)?;

        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("docs-watch".into())
            .spawn(move || watch_loop(weak, rx))?;
        debug!(root = %self.root.display(), "watching docs directory");
        Ok(DocsWatcher {
            _watcher: watcher,
            tx,
        })
    }

    /// Rescan the whole root and rebuild the index. Blocking.
    pub fn reindex_all(&self) -> Result<(), DocsError> {
        let mut writer = lock(&self.writer);
        // Scan while holding the writer lock so no incremental update can
        // land between our scan and our commit (it would be overwritten).
        let docs = self.scan_dir(&self.root)?;
        let result = (|| -> Result<(), DocsError> {
            writer.delete_query(Box::new(AllQuery))?;
            for doc in &docs {
                writer.add_document(self.to_tantivy(doc))?;
            }
            writer.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            rollback(&mut writer);
            return Err(e);
        }
        self.reader.reload()?;
        let map = docs
            .into_iter()
            .map(|d| (d.rel.clone(), entry_of(&d)))
            .collect::<BTreeMap<_, _>>();
        *write_lock(&self.entries) = map;
        Ok(())
    }

    /// Re-sync the given absolute paths with the disk. `walk_dirs` says
    /// whether a directory path should be rescanned (creation/rename) or can
    /// be ignored (metadata change).
    fn sync_paths(&self, paths: &BTreeMap<PathBuf, bool>) -> Result<(), DocsError> {
        let mut writer = lock(&self.writer);
        let mut ops = Vec::new();
        for (abs, &walk_dirs) in paths {
            self.ops_for_path(abs, walk_dirs, &mut ops);
        }
        if ops.is_empty() {
            return Ok(());
        }
        let result = (|| -> Result<(), DocsError> {
            for op in &ops {
                match op {
                    Op::Upsert(doc) => {
                        writer.delete_term(Term::from_field_text(self.fields.path, &doc.rel));
                        writer.add_document(self.to_tantivy(doc))?;
                    }
                    Op::Remove(rel) => {
                        writer.delete_term(Term::from_field_text(self.fields.path, rel));
                    }
                }
            }
            writer.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            rollback(&mut writer);
            return Err(e);
        }
        self.reader.reload()?;
        let mut entries = write_lock(&self.entries);
        for op in ops {
            match op {
                Op::Upsert(doc) => {
                    debug!(path = %doc.rel, "docs: indexed");
                    entries.insert(doc.rel.clone(), entry_of(&doc));
                }
                Op::Remove(rel) => {
                    if entries.remove(&rel).is_some() {
                        debug!(path = %rel, "docs: removed");
                    }
                }
            }
        }
        Ok(())
    }

    /// Work out what one changed path means for the index. Must be called
    /// with the writer lock held (it reads `entries` as the committed state).
    fn ops_for_path(&self, abs: &Path, walk_dirs: bool, ops: &mut Vec<Op>) {
        let Ok(rel_path) = abs.strip_prefix(&self.root) else {
            debug!(path = %abs.display(), "docs: event outside root ignored");
            return;
        };
        let Some(rel) = rel_string(rel_path) else {
            return;
        };
        if rel.is_empty() {
            // The root itself: handled by the caller as a full rescan.
            return;
        }
        let prefix = format!("{rel}/");
        let indexed_under: Vec<String> = read_lock(&self.entries)
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();

        match fs::symlink_metadata(abs) {
            Ok(meta) if meta.is_dir() => {
                if !walk_dirs {
                    return;
                }
                if in_skipped_dir(rel_path, true) {
                    return;
                }
                // A directory appeared or was renamed into place: its files
                // may predate the OS watch on it, so scan it.
                match self.scan_dir(abs) {
                    Ok(docs) => {
                        let found: BTreeSet<&str> = docs.iter().map(|d| d.rel.as_str()).collect();
                        for gone in indexed_under.iter().filter(|p| !found.contains(&p[..])) {
                            ops.push(Op::Remove(gone.clone()));
                        }
                        ops.extend(docs.into_iter().map(Op::Upsert));
                    }
                    Err(e) => {
                        warn!(path = %abs.display(), error = %e, "docs: cannot scan directory")
                    }
                }
            }
            Ok(_) => {
                if is_indexable_rel(rel_path) {
                    match self.load_doc(rel_path, &rel) {
                        Some(doc) => ops.push(Op::Upsert(doc)),
                        None => ops.push(Op::Remove(rel)),
                    }
                } else if read_lock(&self.entries).contains_key(&rel) {
                    ops.push(Op::Remove(rel));
                }
            }
            Err(_) => {
                // Gone (or unreachable): drop it and, if it was a directory,
                // everything that was indexed below it.
                if read_lock(&self.entries).contains_key(&rel) {
                    ops.push(Op::Remove(rel));
                }
                ops.extend(indexed_under.into_iter().map(Op::Remove));
            }
        }
    }

    /// Walk `dir` (the root or a directory below it) and load every document.
    fn scan_dir(&self, dir: &Path) -> Result<Vec<LoadedDoc>, DocsError> {
        // Surface an unreadable start directory as an error instead of an
        // empty result that would wipe the index.
        fs::read_dir(dir)?;
        let mut docs = Vec::new();
        let walker = WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_skipped_entry(e));
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "docs: skipping unreadable entry");
                    continue;
                }
            };
            if entry.file_type().is_dir() {
                continue;
            }
            let Ok(rel_path) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            if !is_indexable_rel(rel_path) {
                continue;
            }
            let Some(rel) = rel_string(rel_path) else {
                warn!(path = %entry.path().display(), "docs: skipping non-UTF-8 path");
                continue;
            };
            if let Some(doc) = self.load_doc(rel_path, &rel) {
                docs.push(doc);
            }
        }
        Ok(docs)
    }

    /// Load one document for indexing; logs and returns `None` when it must
    /// be skipped (escaping symlink, too large, unreadable, ...).
    fn load_doc(&self, rel_path: &Path, rel: &str) -> Option<LoadedDoc> {
        let result = self
            .resolve(rel_path, rel)
            .and_then(|(canon, bytes)| Ok((read_capped(&canon, rel)?, bytes)));
        match result {
            Ok((body, bytes)) => Some(LoadedDoc {
                rel: rel.to_string(),
                title: extract_title(rel_path, &body),
                bytes,
                body,
            }),
            Err(DocsError::TooLarge { bytes, .. }) => {
                debug!(path = rel, bytes, "docs: skipping file over size limit");
                None
            }
            Err(e @ (DocsError::OutsideRoot(_) | DocsError::InvalidPath(_))) => {
                debug!(path = rel, error = %e, "docs: skipping symlink");
                None
            }
            Err(DocsError::NotFound(_)) => None,
            Err(e) => {
                warn!(path = rel, error = %e, "docs: skipping unreadable file");
                None
            }
        }
    }

    /// Canonicalise `root/rel` and check that the target is a regular,
    /// indexable file inside the root. Returns the canonical path and size.
    fn resolve(&self, rel: &Path, shown: &str) -> Result<(PathBuf, u64), DocsError> {
        let canon = match fs::canonicalize(self.root.join(rel)) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DocsError::NotFound(shown.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let Ok(canon_rel) = canon.strip_prefix(&self.root) else {
            return Err(DocsError::OutsideRoot(shown.to_string()));
        };
        // A link inside the root may still point at a hidden file, a build
        // directory or a non-document: apply the same rules to the target.
        if canon_rel != rel && !is_indexable_rel(canon_rel) {
            return Err(DocsError::InvalidPath(format!(
                "{shown}: link target is not a document"
            )));
        }
        let meta = fs::metadata(&canon)?;
        if !meta.is_file() {
            return Err(DocsError::NotFound(shown.to_string()));
        }
        if meta.len() > MAX_DOC_BYTES {
            return Err(DocsError::TooLarge {
                path: shown.to_string(),
                bytes: meta.len(),
            });
        }
        Ok((canon, meta.len()))
    }

    fn to_tantivy(&self, doc: &LoadedDoc) -> TantivyDocument {
        let mut d = TantivyDocument::default();
        d.add_text(self.fields.path, &doc.rel);
        d.add_text(self.fields.title, &doc.title);
        d.add_text(self.fields.body, &doc.body);
        d
    }

    fn apply_batch(&self, batch: Batch) {
        let result = if batch.rescan {
            info!("docs: full rescan");
            self.reindex_all()
        } else {
            self.sync_paths(&batch.paths)
        };
        if let Err(e) = result {
            warn!(error = %e, "docs: failed to apply file changes");
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

fn watch_loop(index: Weak<DocsIndex>, rx: mpsc::Receiver<Msg>) {
    let Some(root) = index.upgrade().map(|i| i.root.clone()) else {
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
        index.apply_batch(batch);
    }
}

// ---------------------------------------------------------------------------
// Path rules

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_skipped_dir_name(name: &str) -> bool {
    is_hidden(name) || SKIPPED_DIRS.contains(&name)
}

fn is_skipped_entry(e: &walkdir::DirEntry) -> bool {
    let name = e.file_name().to_string_lossy();
    if e.file_type().is_dir() {
        is_skipped_dir_name(&name)
    } else {
        is_hidden(&name)
    }
}

fn has_doc_extension(rel: &Path) -> bool {
    rel.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| DOC_EXTENSIONS.iter().any(|d| e.eq_ignore_ascii_case(d)))
}

/// True if any directory component of `rel` is hidden or a build/dependency
/// directory. `including_last` treats the last component as a directory too.
fn in_skipped_dir(rel: &Path, including_last: bool) -> bool {
    let comps: Vec<_> = rel.components().collect();
    let dirs = if including_last {
        &comps[..]
    } else {
        &comps[..comps.len().saturating_sub(1)]
    };
    dirs.iter().any(|c| match c {
        Component::Normal(n) => is_skipped_dir_name(&n.to_string_lossy()),
        _ => true,
    })
}

fn in_skipped_place(rel: &Path) -> bool {
    in_skipped_dir(rel, false)
        || rel
            .file_name()
            .is_none_or(|n| is_hidden(&n.to_string_lossy()))
}

/// Whether a root-relative file path is something we index.
fn is_indexable_rel(rel: &Path) -> bool {
    has_doc_extension(rel) && !in_skipped_place(rel)
}

/// '/'-joined relative path; `None` for non-UTF-8 or non-normal components.
fn rel_string(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// Validate a user-supplied relative path and normalise it.
fn parse_rel_path(rel_path: &str) -> Result<PathBuf, DocsError> {
    if rel_path.contains('\0') {
        return Err(DocsError::InvalidPath("path contains a NUL byte".into()));
    }
    if rel_path.trim().is_empty() {
        return Err(DocsError::InvalidPath("path is empty".into()));
    }
    // Windows-style paths would be read differently on other platforms.
    if rel_path.starts_with('/') || rel_path.starts_with('\\') {
        return Err(DocsError::OutsideRoot(rel_path.to_string()));
    }
    let mut out = PathBuf::new();
    for c in Path::new(rel_path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(DocsError::OutsideRoot(rel_path.to_string()));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(DocsError::InvalidPath(format!("{rel_path}: not a file")));
    }
    Ok(out)
}

/// Read at most `MAX_DOC_BYTES` (the file may grow after the size check).
fn read_capped(path: &Path, shown: &str) -> Result<String, DocsError> {
    let file = fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(MAX_DOC_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_DOC_BYTES {
        return Err(DocsError::TooLarge {
            path: shown.to_string(),
            bytes: buf.len() as u64,
        });
    }
    // Lossy: a stray invalid byte shouldn't make a whole document vanish.
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

// ---------------------------------------------------------------------------
// Titles and snippets

/// First heading (Markdown ATX / AsciiDoc `=`), or for .rst/.txt the first
/// non-empty line if short; otherwise the file stem.
fn extract_title(rel: &Path, body: &str) -> String {
    let ext = rel
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let found = match ext.as_str() {
        "rst" | "txt" => first_line_title(body, ext == "rst"),
        "adoc" => heading_title(body, '=').or_else(|| heading_title(body, '#')),
        _ => heading_title(body, '#'),
    };
    found.unwrap_or_else(|| {
        rel.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// First ATX-style heading using `marker` (`#` for Markdown, `=` for
/// AsciiDoc), skipping YAML front matter and fenced code blocks (where `#`
/// usually starts a shell comment, not a heading).
fn heading_title(body: &str, marker: char) -> Option<String> {
    let mut lines = body.lines().peekable();
    if lines.peek().is_some_and(|l| l.trim_end() == "---") {
        lines.next();
        for l in lines.by_ref() {
            let l = l.trim_end();
            if l == "---" || l == "..." {
                break;
            }
        }
    }
    let mut fence: Option<&str> = None;
    for line in lines {
        let t = line.trim_start();
        if let Some(open) = fence {
            if t.starts_with(open) {
                fence = None;
            }
            continue;
        }
        if t.starts_with("```") {
            fence = Some("```");
            continue;
        }
        if t.starts_with("~~~") {
            fence = Some("~~~");
            continue;
        }
        if let Some(title) = parse_atx(t, marker) {
            return Some(title);
        }
    }
    None
}

fn parse_atx(line: &str, marker: char) -> Option<String> {
    let level = line.chars().take_while(|&c| c == marker).count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level * marker.len_utf8()..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    // Optional closing sequence: "## Title ##".
    let title = rest.trim().trim_end_matches(marker).trim_end();
    (!title.is_empty()).then(|| title.to_string())
}

fn first_line_title(body: &str, rst: bool) -> Option<String> {
    for line in body.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        // rst over-line adornment ("=====") or comment/directive ("..").
        if is_adornment(t) || (rst && t.starts_with("..")) {
            continue;
        }
        let t = parse_atx(t, '#').unwrap_or_else(|| t.to_string());
        return (t.chars().count() <= MAX_TITLE_CHARS).then_some(t);
    }
    None
}

fn is_adornment(line: &str) -> bool {
    let mut chars = line.chars();
    match chars.next() {
        Some(c) if c.is_ascii_punctuation() => line.len() >= 2 && chars.all(|x| x == c),
        _ => false,
    }
}

/// Defuse inputs on which tantivy's query grammar misbehaves:
/// - parentheses nested deeper than `MAX_PAREN_DEPTH` are blanked (with
///   their closers; the dropped ones are always the innermost open ones, so a
///   counter pairs them) because parsing is exponential in nesting depth;
/// - a run of `+`/`-` followed by whitespace (e.g. `- *`) is blanked: it applies to
///   nothing, and `- *` makes the grammar panic.
fn sanitize_query(query: &str) -> String {
    let mut nested = String::with_capacity(query.len());
    let mut depth = 0usize;
    let mut dropped = 0usize;
    for c in query.chars() {
        match c {
            '(' if depth < MAX_PAREN_DEPTH => {
                depth += 1;
                nested.push('(');
            }
            '(' => {
                dropped += 1;
                nested.push(' ');
            }
            ')' if dropped > 0 => {
                dropped -= 1;
                nested.push(' ');
            }
            ')' => {
                depth = depth.saturating_sub(1);
                nested.push(')');
            }
            _ => nested.push(c),
        }
    }
    // Second pass, as blanking parentheses can leave new dangling operators.
    let chars: Vec<char> = nested.chars().collect();
    let mut out = String::with_capacity(nested.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|&&x| x == '+' || x == '-')
            .count();
        if run == 0 {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let dangling = chars.get(i + run).is_none_or(|n| n.is_whitespace());
        for &x in &chars[i..i + run] {
            out.push(if dangling { ' ' } else { x });
        }
        i += run;
    }
    out
}

fn stored_str(doc: &TantivyDocument, field: Field) -> String {
    doc.get_first(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The (stemmed, lowercase) words of `query` that search `field`.
fn body_terms(query: &dyn Query, field: Field) -> Vec<String> {
    let mut terms = Vec::new();
    query.query_terms(&mut |term, _| {
        if term.field() == field
            && let Some(text) = term.value().as_str()
            && !text.is_empty()
        {
            terms.push(text.to_owned());
        }
    });
    terms.sort();
    terms.dedup();
    terms
}

/// Bodies up to this size are given to the snippet generator whole.
const WHOLE_BODY_BYTES: usize = 4096;
/// How many term occurrences [`snippet_window`] weighs at most.
const MAX_OCCURRENCES: usize = 256;

/// The part of `body` the snippet is cut from. The snippet generator tokenizes
/// and stems all the text it is given, which over a long document (the README
/// is ~70 kB) costs milliseconds per hit; a cheap scan for the query's terms
/// picks the ~400 bytes around the spot where most of them meet instead. Terms are
/// stems ("limit" for "limits"), so they are looked up as prefixes of words, in
/// ASCII-lowercased text (byte offsets stay the same). When no term is found
/// the whole body is used, as before.
fn snippet_window<'a>(body: &'a str, terms: &[String]) -> &'a str {
    if body.len() <= WHOLE_BODY_BYTES || terms.is_empty() {
        return body;
    }
    let lower = body.to_ascii_lowercase();
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for (t, term) in terms.iter().enumerate() {
        // memchr's SIMD substring search: `str::find` here cost more than the rest
        // of the search together.
        let finder = memchr::memmem::Finder::new(term.as_bytes());
        let mut from = 0;
        while let Some(at) = finder.find(&lower.as_bytes()[from..]) {
            let at = from + at;
            let starts_word = !lower[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            if starts_word {
                hits.push((at, t));
            }
            from = at + term.len();
            if hits.len() >= MAX_OCCURRENCES {
                break;
            }
        }
    }
    if hits.is_empty() {
        return body;
    }
    hits.sort_unstable();
    // The hit whose next SNIPPET_CHARS bytes hold the most distinct terms.
    let mut best = (0, hits[0].0);
    for (i, &(at, _)) in hits.iter().enumerate() {
        let mut seen = vec![false; terms.len()];
        for &(_, t) in hits[i..]
            .iter()
            .take_while(|(p, _)| *p < at + SNIPPET_CHARS)
        {
            seen[t] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct > best.0 {
            best = (distinct, at);
        }
    }
    // Twice the snippet's length: room for the generator to centre its fragment,
    // little to tokenize and stem.
    let start = floor_boundary(body, best.1.saturating_sub(SNIPPET_CHARS / 2));
    let end = floor_boundary(body, (best.1 + SNIPPET_CHARS * 3 / 2).min(body.len()));
    &body[start..end]
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Insert `**` around highlighted byte ranges, then collapse whitespace.
fn render_snippet(fragment: &str, highlighted: &[std::ops::Range<usize>]) -> String {
    let mut ranges: Vec<_> = highlighted
        .iter()
        .filter(|r| r.start < r.end && r.end <= fragment.len())
        .filter(|r| fragment.is_char_boundary(r.start) && fragment.is_char_boundary(r.end))
        .cloned()
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(fragment.len() + 8 * ranges.len());
    let mut pos = 0;
    for r in ranges {
        if r.start < pos {
            continue; // overlapping; the earlier range already covers it
        }
        out.push_str(&fragment[pos..r.start]);
        out.push_str("**");
        out.push_str(&fragment[r.clone()]);
        out.push_str("**");
        pos = r.end;
    }
    out.push_str(&fragment[pos..]);
    collapse_ws(&out)
}

/// First ~200 characters of the body, whitespace collapsed.
fn head_snippet(body: &str) -> String {
    let flat = collapse_ws(body);
    match flat.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", flat[..cut].trim_end()),
        None => flat,
    }
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn entry_of(doc: &LoadedDoc) -> DocEntry {
    DocEntry {
        path: doc.rel.clone(),
        title: doc.title.clone(),
        bytes: doc.bytes,
    }
}

// ---------------------------------------------------------------------------
// Lock helpers: a panic elsewhere must not make the index unusable, and the
// protected data is always left consistent between statements.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn rollback(writer: &mut IndexWriter<TantivyDocument>) {
    if let Err(e) = writer.rollback() {
        warn!(error = %e, "docs: index rollback failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_long_documents_snippet_comes_from_where_the_terms_meet() {
        let body = format!(
            "Rates are mentioned here. {}\nThe rate limit applies per principal.\n{} limits.",
            "Filler words here. ".repeat(400),
            "More filler. ".repeat(400)
        );
        let terms = vec!["limit".to_string(), "rate".to_string()];
        let window = snippet_window(&body, &terms);
        assert!(window.len() <= SNIPPET_CHARS * 2, "{}", window.len());
        assert!(window.contains("The rate limit applies"), "{window}");
        // Short bodies, and terms found nowhere, keep the whole text.
        assert_eq!(snippet_window("rate limit", &terms), "rate limit");
        let none = vec!["zebra".to_string()];
        assert_eq!(snippet_window(&body, &none).len(), body.len());
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(p, content).unwrap();
    }

    fn paths(idx: &DocsIndex) -> Vec<String> {
        idx.list().into_iter().map(|e| e.path).collect()
    }

    fn hit_paths(idx: &DocsIndex, q: &str) -> Vec<String> {
        idx.search(q, 50)
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect()
    }

    /// Poll until `cond` holds; generous deadline because CI machines are
    /// small and busy, but returns as soon as the condition is met.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    #[test]
    fn index_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<DocsIndex>();
        check::<Arc<DocsIndex>>();
        check::<DocsWatcher>();
    }

    #[test]
    fn bm25_ranks_dense_title_match_first() {
        let dir = tempfile::tempdir().unwrap();
        let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(20);
        write(
            dir.path(),
            "once.md",
            &format!("# Notes\n\n{filler}\nWe also mention zebra here.\n{filler}"),
        );
        write(
            dir.path(),
            "guide/zebra.md",
            "# Zebra handbook\n\nA zebra is striped. Zebra herds move; every zebra grazes.\n",
        );
        write(dir.path(), "other.md", "# Other\n\nNothing relevant.\n");
        let idx = DocsIndex::build(dir.path()).unwrap();
        assert_eq!(idx.len(), 3);

        let hits = idx.search("zebra", 10).unwrap();
        let got: Vec<_> = hits.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(got, ["guide/zebra.md", "once.md"]);
        assert!(hits[0].score > hits[1].score);
        assert_eq!(hits[0].title, "Zebra handbook");
        assert!(hits[0].snippet.contains("**zebra**") || hits[0].snippet.contains("**Zebra**"));
        assert!(hits[1].snippet.chars().count() <= SNIPPET_CHARS + 20);
        assert!(!hits[1].snippet.contains('\n'));

        // Stemming: "zebras" finds "zebra".
        assert_eq!(hit_paths(&idx, "zebras").len(), 2);
        // Limit is clamped to at least one.
        assert_eq!(idx.search("zebra", 0).unwrap().len(), 1);
    }

    #[test]
    fn title_only_match_gets_body_head_snippet() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.rst", "Quokka\n======\n\nSmall marsupial.\n");
        let idx = DocsIndex::build(dir.path()).unwrap();
        let hits = idx.search("quokka", 5).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].title, "Quokka");
        assert!(!hits[0].snippet.is_empty());
    }

    #[test]
    fn titles() {
        let t = |name: &str, body: &str| extract_title(Path::new(name), body);
        assert_eq!(
            t("a.md", "intro\n\n## Second level ##\n# Later\n"),
            "Second level"
        );
        assert_eq!(
            t("a.md", "---\ntitle: x\n# not a heading\n---\n# Real\n"),
            "Real"
        );
        assert_eq!(
            t("a.md", "```sh\n# comment\n```\n# After fence\n"),
            "After fence"
        );
        assert_eq!(t("a.md", "#hashtag\nno heading here\n"), "a");
        assert_eq!(t("dir/setup-guide.markdown", ""), "setup-guide");
        assert_eq!(
            t("x.mdx", "import X from 'y'\n\n# MDX Title\n"),
            "MDX Title"
        );
        assert_eq!(t("x.rst", "\n=====\nTitle\n=====\n\nbody\n"), "Title");
        assert_eq!(t("x.rst", ".. comment\n\nHeading\n-------\n"), "Heading");
        assert_eq!(t("x.txt", "\n  Release notes  \nmore\n"), "Release notes");
        assert_eq!(t("x.txt", &"long ".repeat(30)), "x");
        assert_eq!(t("x.adoc", ":toc:\n\n= Asciidoc Title\n"), "Asciidoc Title");
        assert_eq!(t("x.MD", "# Upper ext\n"), "Upper ext");
    }

    #[test]
    fn skips_hidden_build_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "README.MD", "# Readme\nkeepme\n");
        write(r, "docs/guide.txt", "keepme guide\n");
        write(r, "docs/deep/x.adoc", "= X\nkeepme\n");
        for skipped in [
            ".hidden.md",
            ".git/HEAD.md",
            "docs/.cache/a.md",
            "target/doc/a.md",
            "node_modules/pkg/README.md",
            "dist/a.md",
            "build/a.md",
            "__pycache__/a.md",
            "venv/a.md",
            ".venv/a.md",
            "src/main.rs",
            "image.png",
            "notes.md.bak",
        ] {
            write(r, skipped, "keepme\n");
        }
        // Over the 2 MiB cap.
        write(r, "huge.md", &"keepme ".repeat(400_000));
        let idx = DocsIndex::build(r).unwrap();
        assert_eq!(
            paths(&idx),
            ["README.MD", "docs/deep/x.adoc", "docs/guide.txt"]
        );
        assert_eq!(hit_paths(&idx, "keepme").len(), 3);
        let entry = &idx.list()[0];
        assert_eq!(entry.title, "Readme");
        assert_eq!(entry.bytes, "# Readme\nkeepme\n".len() as u64);
    }

    #[test]
    fn build_rejects_non_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "f.md", "x");
        assert!(matches!(
            DocsIndex::build(&dir.path().join("f.md")),
            Err(DocsError::NotADirectory(_))
        ));
        assert!(matches!(
            DocsIndex::build(&dir.path().join("missing")),
            Err(DocsError::Io(_))
        ));
    }

    #[test]
    fn read_is_confined_to_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "guide/setup.md", "# Setup\nsteps\n");
        write(r, "notes.rs", "fn main() {}");
        write(r, ".secret.md", "secret");
        write(outside.path(), "secret.md", "outside secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(outside.path().join("secret.md"), r.join("escape.md")).unwrap();
            symlink(outside.path(), r.join("linkdir")).unwrap();
            symlink(r.join("guide/setup.md"), r.join("alias.md")).unwrap();
            symlink(r.join(".secret.md"), r.join("peek.md")).unwrap();
        }
        let idx = DocsIndex::build(r).unwrap();

        assert_eq!(idx.read("guide/setup.md").unwrap(), "# Setup\nsteps\n");
        assert_eq!(idx.read("./guide/setup.md").unwrap(), "# Setup\nsteps\n");
        for bad in [
            "../x.md",
            "a/../../x.md",
            "guide/../guide/setup.md",
            "/etc/passwd",
        ] {
            assert!(
                matches!(idx.read(bad), Err(DocsError::OutsideRoot(_))),
                "{bad} must be refused"
            );
        }
        let abs = r.join("guide/setup.md");
        assert!(matches!(
            idx.read(abs.to_str().unwrap()),
            Err(DocsError::OutsideRoot(_))
        ));
        assert!(matches!(idx.read("a\0.md"), Err(DocsError::InvalidPath(_))));
        assert!(matches!(idx.read(""), Err(DocsError::InvalidPath(_))));
        assert!(matches!(
            idx.read("notes.rs"),
            Err(DocsError::InvalidPath(_))
        ));
        assert!(matches!(
            idx.read(".secret.md"),
            Err(DocsError::NotFound(_))
        ));
        assert!(matches!(
            idx.read("missing.md"),
            Err(DocsError::NotFound(_))
        ));
        assert!(matches!(idx.read("guide"), Err(DocsError::InvalidPath(_))));

        #[cfg(unix)]
        {
            assert!(matches!(
                idx.read("escape.md"),
                Err(DocsError::OutsideRoot(_))
            ));
            assert!(matches!(
                idx.read("linkdir/secret.md"),
                Err(DocsError::OutsideRoot(_))
            ));
            assert!(matches!(
                idx.read("peek.md"),
                Err(DocsError::InvalidPath(_))
            ));
            assert_eq!(idx.read("alias.md").unwrap(), "# Setup\nsteps\n");
            // The scan applies the same rules.
            assert_eq!(paths(&idx), ["alias.md", "guide/setup.md"]);
            assert!(idx.search("outside secret", 10).unwrap().is_empty());
        }

        // read() sees fresh content without reindexing.
        write(r, "guide/setup.md", "changed");
        assert_eq!(idx.read("guide/setup.md").unwrap(), "changed");
        // Size cap applies.
        write(r, "big.md", &"x".repeat(MAX_DOC_BYTES as usize + 1));
        assert!(matches!(
            idx.read("big.md"),
            Err(DocsError::TooLarge { .. })
        ));
    }

    #[test]
    fn lenient_and_invalid_queries() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.md", "# Foo\nfoo bar baz\n");
        let idx = DocsIndex::build(dir.path()).unwrap();
        for q in [
            "foo AND (",
            "foo)",
            "\"foo",
            "title:",
            "nosuchfield:foo",
            "foo^",
            "*",
            ":::",
            "AND OR NOT",
            "[1 TO",
            // These panic inside tantivy 0.25's grammar unless defused.
            "- *",
            "a -+ *",
            "-a:((((+ +()*:",
        ] {
            assert!(idx.search(q, 10).is_ok(), "query {q:?} must not fail");
        }
        assert_eq!(hit_paths(&idx, "foo AND ("), ["a.md"]);
        assert!(matches!(idx.search("", 10), Err(DocsError::QueryParse(_))));
        assert!(matches!(
            idx.search("  \t\n", 10),
            Err(DocsError::QueryParse(_))
        ));
        assert!(matches!(
            idx.search(&"foo ".repeat(400), 10),
            Err(DocsError::QueryParse(_))
        ));
        // Deep nesting is exponential for the grammar and used to overflow a
        // tokio-sized (2 MiB) stack; it must now be quick and harmless.
        let idx2 = Arc::clone(&idx);
        let started = Instant::now();
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                idx2.search(&"(".repeat(MAX_QUERY_BYTES), 10).unwrap();
                let nested = format!("{}foo{}", "(".repeat(500), ")".repeat(500));
                assert_eq!(idx2.search(&nested, 10).unwrap().len(), 1);
                idx2.search(&"NOT (".repeat(200), 10).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn sanitize_query_limits_nesting_and_dangling_operators() {
        assert_eq!(sanitize_query("a AND (b OR c)"), "a AND (b OR c)");
        assert_eq!(sanitize_query("-foo +bar"), "-foo +bar");
        assert_eq!(sanitize_query("(((((x)))))"), "(((( x ))))");
        assert_eq!(sanitize_query("- * foo -"), "  * foo  ");
        assert_eq!(sanitize_query("((((+ (x"), "((((   x");
        assert_eq!(sanitize_query("e-mail"), "e-mail");
    }

    #[test]
    fn concurrent_search_during_reindex() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            write(
                dir.path(),
                &format!("d{i}.md"),
                &format!("# Doc {i}\nshared words {i}\n"),
            );
        }
        let idx = DocsIndex::build(dir.path()).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let idx = Arc::clone(&idx);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                        let hits = idx.search("shared", 50).unwrap();
                        assert!(hits.len() >= 20);
                        assert!(idx.list().len() >= 20);
                        idx.read("d3.md").unwrap();
                        n += 1;
                    }
                })
            })
            .collect();
        for i in 20..25 {
            write(dir.path(), &format!("d{i}.md"), "shared\n");
            idx.reindex_all().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(idx.len(), 25);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watcher_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().to_path_buf();
        write(&r, "keep.md", "# Keep\nstable content\n");
        write(&r, "edit.md", "# Edit\nbefore pelican\n");
        let root = r.clone();
        let idx = tokio::task::spawn_blocking(move || DocsIndex::build(&root))
            .await
            .unwrap()
            .unwrap();
        let _guard = idx.watch().unwrap();

        // Create.
        write(&r, "new.md", "# New\nfresh armadillo\n");
        eventually("created file indexed", || {
            hit_paths(&idx, "armadillo") == ["new.md"]
        })
        .await;
        assert_eq!(
            idx.list()
                .iter()
                .find(|e| e.path == "new.md")
                .unwrap()
                .title,
            "New"
        );

        // Modify.
        write(&r, "edit.md", "# Edited\nafter flamingo\n");
        eventually("modified file re-indexed", || {
            hit_paths(&idx, "flamingo") == ["edit.md"] && hit_paths(&idx, "pelican").is_empty()
        })
        .await;

        // Editor-style atomic save: write a temp file, rename over the target.
        write(&r, ".keep.md.swp", "# Keep\nreplaced wombat\n");
        fs::rename(r.join(".keep.md.swp"), r.join("keep.md")).unwrap();
        eventually("atomically replaced file re-indexed", || {
            hit_paths(&idx, "wombat") == ["keep.md"] && hit_paths(&idx, "stable").is_empty()
        })
        .await;

        // Delete.
        fs::remove_file(r.join("new.md")).unwrap();
        eventually("deleted file removed", || {
            hit_paths(&idx, "armadillo").is_empty() && idx.len() == 2
        })
        .await;

        // A new directory with files, then renaming and deleting it.
        write(&r, "sub/inner/a.md", "# A\nnested capybara\n");
        write(&r, "sub/b.txt", "nested capybara too\n");
        eventually("new directory indexed", || {
            hit_paths(&idx, "capybara").len() == 2
        })
        .await;
        fs::rename(r.join("sub"), r.join("moved")).unwrap();
        eventually("renamed directory re-indexed", || {
            let mut p = hit_paths(&idx, "capybara");
            p.sort();
            p == ["moved/b.txt", "moved/inner/a.md"]
        })
        .await;
        fs::remove_dir_all(r.join("moved")).unwrap();
        eventually("removed directory dropped", || {
            hit_paths(&idx, "capybara").is_empty() && idx.len() == 2
        })
        .await;

        // Ignored places stay ignored.
        write(&r, "node_modules/x/README.md", "capybara\n");
        write(&r, ".hidden.md", "capybara\n");
        write(&r, "marker.md", "sentinel\n");
        eventually("marker indexed", || hit_paths(&idx, "sentinel").len() == 1).await;
        assert!(hit_paths(&idx, "capybara").is_empty());
        assert_eq!(paths(&idx), ["edit.md", "keep.md", "marker.md"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_watcher_stops_updates() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.md", "alpha\n");
        let idx = DocsIndex::build(dir.path()).unwrap();
        let guard = idx.watch().unwrap();
        write(dir.path(), "b.md", "beta\n");
        eventually("b indexed", || idx.len() == 2).await;
        drop(guard);
        write(dir.path(), "c.md", "gamma\n");
        tokio::time::sleep(DEBOUNCE * 3).await;
        assert_eq!(idx.len(), 2);
    }
}
