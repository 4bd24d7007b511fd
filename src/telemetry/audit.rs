//! The audit trail: one JSON line per `tools/call`, `resources/read` and
//! `prompts/get`, refused ones included, to stdout, stderr or a size-rotated file.
//!
//! Records are handed to a writer thread through a bounded queue, so a slow disk
//! or a full pipe never holds a request; what cannot be queued is counted in
//! `mcp_edge_audit_records_dropped_total`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use serde::Serialize;

use crate::config::{AuditConfig, AuditOutput};

/// Records queued for the writer beyond this are dropped (and counted).
const QUEUE: usize = 16 * 1024;

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

enum Message {
    Line(String),
    /// Flush everything queued before this, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Where audit records go; cheap to share (`Arc`).
pub struct Audit {
    sender: Option<SyncSender<Message>>,
    log_arguments: bool,
}

impl Audit {
    /// No records (`audit.output = "off"`).
    pub fn off() -> Audit {
        Audit {
            sender: None,
            log_arguments: false,
        }
    }

    /// Open the output and start the writer thread.
    pub fn start(config: &AuditConfig) -> Result<Audit, AuditError> {
        let sink: Box<dyn Write + Send> = match &config.output {
            AuditOutput::Off => return Ok(Audit::off()),
            AuditOutput::Stdout => Box::new(BufWriter::with_capacity(64 * 1024, std::io::stdout())),
            AuditOutput::Stderr => Box::new(BufWriter::with_capacity(64 * 1024, std::io::stderr())),
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
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(receiver, sink))
            .map_err(|source| AuditError {
                path: "(writer thread)".into(),
                source,
            })?;
        Ok(Audit {
            sender: Some(sender),
            log_arguments: config.log_arguments,
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    pub fn log_arguments(&self) -> bool {
        self.log_arguments
    }

    /// Queue one record (never blocks).
    pub fn write(&self, record: &Record) {
        let Some(sender) = &self.sender else { return };
        let mut line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(_) => return crate::metrics::audit_write_failed(),
        };
        line.push('\n');
        match sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                crate::metrics::audit_record_dropped()
            }
        }
    }

    /// Wait (bounded) until every record queued so far is written: at shutdown.
    pub fn flush(&self, timeout: Duration) {
        let Some(sender) = &self.sender else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

/// Each line is one `write_all` on the (buffered) sink, so a rotating file turns
/// over between whole lines.
fn write_loop(receiver: Receiver<Message>, mut out: Box<dyn Write + Send>) {
    while let Ok(mut message) = receiver.recv() {
        // Write what is queued, then flush once the queue has run dry.
        loop {
            match message {
                Message::Line(line) => {
                    if out.write_all(line.as_bytes()).is_err() {
                        crate::metrics::audit_write_failed();
                    }
                }
                Message::Flush(done) => {
                    flush(&mut out);
                    let _ = done.send(());
                }
            }
            match receiver.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        flush(&mut out);
    }
    flush(&mut out);
}

fn flush(out: &mut Box<dyn Write + Send>) {
    if out.flush().is_err() {
        crate::metrics::audit_write_failed();
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
        // Rotate between lines (the writer hands over one whole line per call).
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
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
        audit.flush(Duration::from_secs(5));
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
