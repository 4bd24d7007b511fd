//! Which files under the root are documents, and the checks every path from
//! a user or the disk passes before it is opened.

use std::fs;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use super::{DOC_EXTENSIONS, DocsError, MAX_DOC_BYTES};

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

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_skipped_dir_name(name: &str) -> bool {
    is_hidden(name) || SKIPPED_DIRS.contains(&name)
}

pub(super) fn is_skipped_entry(e: &walkdir::DirEntry) -> bool {
    let name = e.file_name().to_string_lossy();
    if e.file_type().is_dir() {
        is_skipped_dir_name(&name)
    } else {
        is_hidden(&name)
    }
}

pub(super) fn has_doc_extension(rel: &Path) -> bool {
    rel.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| DOC_EXTENSIONS.iter().any(|d| e.eq_ignore_ascii_case(d)))
}

/// True if any directory component of `rel` is hidden or a build/dependency
/// directory. `including_last` treats the last component as a directory too.
pub(super) fn in_skipped_dir(rel: &Path, including_last: bool) -> bool {
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

pub(super) fn in_skipped_place(rel: &Path) -> bool {
    in_skipped_dir(rel, false)
        || rel
            .file_name()
            .is_none_or(|n| is_hidden(&n.to_string_lossy()))
}

/// Whether a root-relative file path is something we index.
pub(super) fn is_indexable_rel(rel: &Path) -> bool {
    has_doc_extension(rel) && !in_skipped_place(rel)
}

/// '/'-joined relative path; `None` for non-UTF-8 or non-normal components.
pub(super) fn rel_string(rel: &Path) -> Option<String> {
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
pub(super) fn parse_rel_path(rel_path: &str) -> Result<PathBuf, DocsError> {
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
pub(super) fn read_capped(path: &Path, shown: &str) -> Result<String, DocsError> {
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
