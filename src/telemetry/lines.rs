//! Where log lines go: stderr, without a system call per line. Info and below (the
//! access line of every request) are appended to a buffer a thread writes out every
//! [`WRITE_EVERY`]; warnings and errors are written at once, after what was buffered
//! before them, so the order of lines holds and a problem is never late.

use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::sync::lock;

/// How often buffered lines are written out.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Past this many buffered bytes a line is written at once (with what is buffered):
/// a burst never grows the buffer without bound, and no line is dropped.
const MAX_PENDING: usize = 1024 * 1024;

struct Pending {
    bytes: Mutex<Vec<u8>>,
}

impl Pending {
    /// Write out what is buffered, then `line` (under the lock: lines stay in order).
    fn write_through(&self, line: &[u8]) {
        let mut pending = lock(&self.bytes);
        let mut err = std::io::stderr().lock();
        if !pending.is_empty() {
            let _ = err.write_all(&pending);
            pending.clear();
        }
        let _ = err.write_all(line);
    }

    fn drain(&self) {
        self.write_through(&[]);
    }
}

/// The log output: a [`MakeWriter`] for the fmt layer. Cheap to clone.
#[derive(Clone)]
pub struct LogLines {
    pending: Arc<Pending>,
}

impl LogLines {
    /// Start the writer thread (it ends when every `LogLines` is gone).
    pub fn start() -> LogLines {
        let pending = Arc::new(Pending {
            bytes: Mutex::new(Vec::with_capacity(64 * 1024)),
        });
        let weak = Arc::downgrade(&pending);
        // Without the thread (it could not start), lines are written at once: its
        // `Weak` is gone with it (see `make_writer_for`).
        let _ = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(weak));
        LogLines { pending }
    }

    /// Write out every buffered line (at shutdown).
    pub fn flush(&self) {
        self.pending.drain();
    }
}

fn write_loop(pending: Weak<Pending>) {
    loop {
        std::thread::sleep(WRITE_EVERY);
        let Some(pending) = pending.upgrade() else {
            return;
        };
        pending.drain();
    }
}

/// One event's line (the fmt layer writes a whole line per event).
pub struct Line<'a> {
    pending: &'a Pending,
    at_once: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.at_once {
            self.pending.write_through(buf);
            return Ok(buf.len());
        }
        let mut pending = lock(&self.pending.bytes);
        if pending.len() + buf.len() > MAX_PENDING {
            drop(pending);
            self.pending.write_through(buf);
        } else {
            pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogLines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            pending: &self.pending,
            at_once: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            pending: &self.pending,
            at_once: *meta.level() <= Level::WARN || Arc::weak_count(&self.pending) == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_wait_for_the_writer_and_a_warning_writes_them_first() {
        // No writer thread: nothing drains behind the test's back.
        let lines = LogLines {
            pending: Arc::new(Pending {
                bytes: Mutex::new(Vec::new()),
            }),
        };
        let mut info = Line {
            pending: &lines.pending,
            at_once: false,
        };
        info.write_all(b"one\n").unwrap();
        info.write_all(b"two\n").unwrap();
        assert_eq!(lock(&lines.pending.bytes).as_slice(), b"one\ntwo\n");
        let mut warn = Line {
            pending: &lines.pending,
            at_once: true,
        };
        warn.write_all(b"warning\n").unwrap();
        assert!(lock(&lines.pending.bytes).is_empty(), "written out first");
        info.write_all(&vec![b'x'; MAX_PENDING + 1]).unwrap();
        assert!(
            lock(&lines.pending.bytes).is_empty(),
            "a burst is written at once"
        );
    }
}
