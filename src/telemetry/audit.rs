//! The audit trail: one JSON line per `tools/call`, `resources/read` and
//! `prompts/get`, refused ones included, to stdout, stderr or a size-rotated file.
//!
//! Records are appended to a bounded buffer that a writer thread writes out every
//! 100 ms, so a slow disk or a full pipe never holds a request; what does not fit
//! is counted in `mcp_edge_audit_records_dropped_total`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::config::{AuditConfig, AuditOutput};
use crate::sync::lock;

/// Bytes of records waiting for the writer beyond this are dropped (and counted).
const MAX_PENDING: usize = 16 * 1024 * 1024;
/// How often the writer thread writes what has been appended.
const WRITE_EVERY: Duration = Duration::from_millis(100);

/// One audited request. Never holds a key, token or (unless `audit.log_arguments`)
/// an argument value: arguments are identified by their SHA-256.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds: when the request arrived.
    pub time: String,
    /// `tools/call`, `resources/read` or `prompts/get`.
    pub method: String,
    /// The tool, resource URI or prompt, as the client named it.
    pub name: Option<String>,
    /// The backend serving `name` (`docs` for the built-in tools).
    pub backend: Option<String>,
    pub principal: Option<String>,
    /// Which credential: an API key's digest id, or the JWT's signing key.
    pub credential: Option<String>,
    /// The JWT's `jti`, when it has one.
    pub token_id: Option<String>,
    pub session: Option<String>,
    /// `stateless`, `session` or `legacy_sse`.
    pub session_kind: &'static str,
    pub client: Option<String>,
    /// `ok`, `tool_error`, `rpc_error`, `refused` or `aborted`.
    pub outcome: &'static str,
    /// Why it was refused (or failed): e.g. `invalid_key`, `rate_limited`,
    /// `insufficient_scope`, `tool_denied`.
    pub reason: Option<String>,
    /// The JSON-RPC error code of an error answer.
    pub error_code: Option<i64>,
    pub status: u16,
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// SHA-256 (hex) of the arguments' JSON text as sent.
    pub arguments_sha256: Option<String>,
    /// The arguments themselves, only with `audit.log_arguments = true`.
    pub arguments: Option<Box<serde_json::value::RawValue>>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("audit.file: cannot open {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

/// What the request path appends to and the writer thread drains.
struct Inner {
    pending: Mutex<Vec<u8>>,
    /// Held while a drained buffer is written, so records stay in order.
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Inner {
    /// Write out everything appended so far.
    fn drain(&self) {
        let mut sink = lock(&self.sink);
        let data = std::mem::take(&mut *lock(&self.pending));
        if data.is_empty() {
            return;
        }
        if sink.write_all(&data).and_then(|()| sink.flush()).is_err() {
            crate::metrics::audit_write_failed();
        }
    }
}

/// Where audit records go; cheap to share (`Arc`).
pub struct Audit {
    inner: Option<Arc<Inner>>,
    log_arguments: bool,
}

impl Audit {
    /// No records (`audit.output = "off"`).
    pub fn off() -> Audit {
        Audit {
            inner: None,
            log_arguments: false,
        }
    }

    /// Open the output and start the writer thread.
    pub fn start(config: &AuditConfig) -> Result<Audit, AuditError> {
        let sink: Box<dyn Write + Send> = match &config.output {
            AuditOutput::Off => return Ok(Audit::off()),
            AuditOutput::Stdout => Box::new(std::io::stdout()),
            AuditOutput::Stderr => Box::new(std::io::stderr()),
            AuditOutput::File {
                path,
                max_bytes,
                keep,
            } => Box::new(
                Rotating::open(path.clone(), *max_bytes, *keep).map_err(|source| AuditError {
                    path: path.display().to_string(),
                    source,
                })?,
            ),
        };
        let inner = Arc::new(Inner {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            sink: Mutex::new(sink),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(weak))
            .map_err(|source| AuditError {
                path: "(writer thread)".into(),
                source,
            })?;
        Ok(Audit {
            inner: Some(inner),
            log_arguments: config.log_arguments,
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn log_arguments(&self) -> bool {
        self.log_arguments
    }

    /// Append one record (never blocks on I/O: the writer thread writes it within
    /// [`WRITE_EVERY`]).
    pub fn write(&self, record: &Record) {
        let Some(inner) = &self.inner else { return };
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(_) => return crate::metrics::audit_write_failed(),
        };
        line.push(b'\n');
        let mut pending = lock(&inner.pending);
        if pending.len() + line.len() > MAX_PENDING {
            drop(pending);
            return crate::metrics::audit_record_dropped();
        }
        pending.extend_from_slice(&line);
    }

    /// Write every record appended so far: at shutdown, and in tests.
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.drain();
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Drain every [`WRITE_EVERY`] until the [`Audit`] is gone. Batching keeps the
/// request path to a lock and a copy (no syscall, no thread wake-up per record).
fn write_loop(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(WRITE_EVERY);
        let Some(inner) = inner.upgrade() else { return };
        inner.drain();
    }
}

/// A file rotated by size: `path` → `path.1` → … → `path.<keep>` (the oldest goes).
struct Rotating {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl Rotating {
    fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Rotating> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
            max_bytes,
            keep,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            self.file = BufWriter::with_capacity(64 * 1024, File::create(&self.path)?);
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
            self.file = BufWriter::with_capacity(64 * 1024, open_append(&self.path)?);
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The writer hands over whole lines; rotate between them.
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
                self.rotate()?;
            }
            self.file.write_all(line)?;
            self.size += line.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record {
            method: "tools/call".into(),
            name: Some(format!("tool-{n}")),
            outcome: "ok",
            session_kind: "stateless",
            ..Record::default()
        }
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::start(&AuditConfig {
            output: AuditOutput::File {
                path: path.clone(),
                max_bytes: 4096,
                keep: 2,
            },
            log_arguments: false,
        })
        .unwrap();
        for n in 0..200 {
            audit.write(&record(n));
        }
        audit.flush();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (current, one, two) = (
            read(&path),
            read(&numbered(&path, 1)),
            read(&numbered(&path, 2)),
        );
        assert!(!numbered(&path, 3).exists(), "only `keep` old files");
        for text in [&current, &one, &two] {
            assert!(
                !text.is_empty() && text.len() <= 4096 + 512,
                "{}",
                text.len()
            );
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("whole lines");
                assert_eq!(v["method"], "tools/call");
            }
        }
        assert!(
            current.contains("\"tool-199\""),
            "the newest is in the current file"
        );
    }
}
