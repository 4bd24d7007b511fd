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

mod index;
mod paths;
mod query;
mod scan;
mod snippet;
mod text;
mod watch;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use index::DocsIndex;
pub use watch::{DocsWatcher, IndexReload};

/// Files larger than this are neither indexed nor returned by `read`.
pub const MAX_DOC_BYTES: u64 = 2 * 1024 * 1024;
/// Extensions (lower-case, no dot) of the files that are treated as documents.
pub const DOC_EXTENSIONS: &[&str] = &["md", "markdown", "mdx", "txt", "rst", "adoc"];

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
