//! Loading documents from disk: walking a directory, and opening one file only
//! once its canonical target is known to be an indexable file inside the root.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use walkdir::WalkDir;

use super::paths::{is_indexable_rel, is_skipped_entry, read_capped, rel_string};
use super::text::extract_title;
use super::{DocsError, MAX_DOC_BYTES};

/// A document loaded from disk, ready to be indexed.
pub(super) struct LoadedDoc {
    pub(super) rel: String,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) bytes: u64,
}

/// Walk `dir` (the root or a directory below it) and load every document.
pub(super) fn scan_dir(root: &Path, dir: &Path) -> Result<Vec<LoadedDoc>, DocsError> {
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
        let Ok(rel_path) = entry.path().strip_prefix(root) else {
            continue;
        };
        if !is_indexable_rel(rel_path) {
            continue;
        }
        let Some(rel) = rel_string(rel_path) else {
            warn!(path = %entry.path().display(), "docs: skipping non-UTF-8 path");
            continue;
        };
        if let Some(doc) = load_doc(root, rel_path, &rel) {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Load one document for indexing; logs and returns `None` when it must
/// be skipped (escaping symlink, too large, unreadable, ...).
pub(super) fn load_doc(root: &Path, rel_path: &Path, rel: &str) -> Option<LoadedDoc> {
    let result = resolve(root, rel_path, rel)
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
pub(super) fn resolve(root: &Path, rel: &Path, shown: &str) -> Result<(PathBuf, u64), DocsError> {
    let canon = match fs::canonicalize(root.join(rel)) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DocsError::NotFound(shown.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let Ok(canon_rel) = canon.strip_prefix(root) else {
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
