//! Child processes for stdio backends: own process group, bounded count, stderr to the
//! log, SIGTERM → SIGKILL on stop, always reaped.
//!
//! Each child is owned by one supervisor task. Dropping the [`ChildProc`] handle (the
//! session closed, the pool evicted it, the edge shuts down) tells that task to stop the
//! child: SIGTERM to the whole process group, SIGKILL to the group after the grace
//! period, then `wait()` so no zombie is left. A child that exits on its own is reaped
//! by the same task at once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::credentials::Credentials;
use crate::sync::lock;

/// Every live child of this process (all backends): the one record of them. The
/// PID-1 reaper asks it which PIDs are ours; its size is the child-process gauge.
#[derive(Default)]
struct Children {
    /// PID → how many live children hold it (a PID can be handed out again before the
    /// supervisor that reaped its first owner has taken it off this list).
    pids: HashMap<i32, usize>,
    count: usize,
    /// (backend, principal it was started for; empty for a shared one) → live children.
    owners: BTreeMap<(Arc<str>, Arc<str>), usize>,
}

fn children() -> std::sync::MutexGuard<'static, Children> {
    static CHILDREN: OnceLock<Mutex<Children>> = OnceLock::new();
    lock(CHILDREN.get_or_init(Default::default))
}

/// The number of live backend child processes in this process.
pub fn live_children() -> usize {
    children().count
}

/// Live children by (backend, principal they were started for; empty when started
/// for nobody in particular: a pool's, the start-up probe's), for the status page.
pub fn children_by_owner() -> Vec<(Arc<str>, Arc<str>, usize)> {
    children()
        .owners
        .iter()
        .map(|((backend, principal), n)| (backend.clone(), principal.clone(), *n))
        .collect()
}

fn is_ours(pid: i32) -> bool {
    children().pids.contains_key(&pid)
}

/// A child's entry in [`Children`], held by its supervisor task from spawn until the
/// child is reaped. The only place the count changes: the process-wide record, the
/// supervisor's own count and the metrics gauge move together.
struct Counted {
    pid: i32,
    supervisor: Arc<AtomicUsize>,
    owner: (Arc<str>, Arc<str>),
}

impl Counted {
    fn new(pid: i32, supervisor: Arc<AtomicUsize>, owner: (Arc<str>, Arc<str>)) -> Counted {
        let mut all = children();
        *all.pids.entry(pid).or_default() += 1;
        all.count += 1;
        *all.owners.entry(owner.clone()).or_default() += 1;
        supervisor.fetch_add(1, Ordering::Relaxed);
        crate::metrics::set_child_processes(all.count);
        Counted {
            pid,
            supervisor,
            owner,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut all = children();
        if let Some(n) = all.pids.get_mut(&self.pid) {
            *n -= 1;
            if *n == 0 {
                all.pids.remove(&self.pid);
            }
        }
        all.count -= 1;
        if let Some(n) = all.owners.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                all.owners.remove(&self.owner);
            }
        }
        self.supervisor.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::set_child_processes(all.count);
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StdioSpec {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub env_allowlist: Vec<String>,
    pub cwd: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the edge already runs its maximum of {0} backend processes (proxy.max_children)")]
    TooMany(usize),
    #[error("cannot start {program:?}: {source}")]
    Io {
        program: String,
        source: std::io::Error,
    },
}

/// Spawns children and bounds how many live at once.
#[derive(Clone)]
pub struct Supervisor {
    slots: Arc<Semaphore>,
    max: usize,
    live: Arc<AtomicUsize>,
    kill_grace: Duration,
    tasks: TaskTracker,
}

impl Supervisor {
    pub fn new(max: usize, kill_grace: Duration) -> Supervisor {
        Supervisor {
            slots: Arc::new(Semaphore::new(max)),
            max,
            live: Arc::new(AtomicUsize::new(0)),
            kill_grace,
            tasks: TaskTracker::new(),
        }
    }

    /// Live children of this supervisor (cheap; for metrics and tests).
    pub fn live(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }

    /// Wait until every child this supervisor started has been stopped and reaped.
    pub async fn wait_all(&self, timeout: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(timeout, self.tasks.wait()).await;
        self.tasks.reopen();
    }

    /// Start `spec` in its own process group, for `principal` (empty: for nobody in
    /// particular). `label` tags its stderr lines in the log.
    pub fn spawn(
        &self,
        backend: &str,
        principal: &str,
        spec: &StdioSpec,
        credentials: &Credentials,
        label: Arc<Mutex<String>>,
    ) -> Result<(ChildProc, CheckedStdout, ChildStdin), SpawnError> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| SpawnError::TooMany(self.max))?;
        let program = spec.command[0].clone();
        let mut child = command(spec, credentials)
            .spawn()
            .map_err(|source| SpawnError::Io {
                program: program.clone(),
                source,
            })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let stdout = child.stdout.take().expect("stdout piped");
        let stdin = child.stdin.take().expect("stdin piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let backend: Arc<str> = backend.into();
        let counted = Counted::new(pid, self.live.clone(), (backend.clone(), principal.into()));
        tracing::info!(backend = %backend, pid, session = %label.lock().map(|l| l.clone()).unwrap_or_default(), command = %program, "backend process started");

        self.tasks
            .spawn(log_stderr(stderr, backend.clone(), pid, label.clone()));
        // Garbage on stdout (anything but JSON-RPC lines) means the child is broken:
        // rmcp would skip such lines and the call waiting for an answer would hang, so
        // the edge stops the child instead; its calls fail and the next one restarts it.
        let broken = CancellationToken::new();
        let stdout = check_stdout(stdout, backend.clone(), pid, label, broken.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(false);
        let running = Running {
            child,
            pid,
            backend,
            _permit: permit,
            counted,
        };
        self.tasks
            .spawn(running.supervise(self.kill_grace, stop_rx, broken, exit_tx));
        Ok((
            ChildProc {
                pid,
                _stop: stop_tx,
                exited: exit_rx,
            },
            stdout,
            stdin,
        ))
    }
}

/// The command for `spec`: a cleared environment rebuilt from the allowlist and `env`,
/// then the principal's `credentials` (last, so nothing inherited can shadow them).
fn command(spec: &StdioSpec, credentials: &Credentials) -> Command {
    let mut cmd = Command::new(&spec.command[0]);
    cmd.args(&spec.command[1..])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: signals reach the whole tree it starts (npx → node,
        // uv → python), and a Ctrl-C at the edge's terminal does not hit it first.
        .process_group(0)
        // Last resort if the supervisor task is dropped with the runtime.
        .kill_on_drop(true);
    for name in &spec.env_allowlist {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(&spec.env);
    cmd.envs(credentials.env());
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

/// The child's stderr, line by line (long lines cut), into the edge's log.
async fn log_stderr(stderr: ChildStderr, backend: Arc<str>, pid: i32, label: Arc<Mutex<String>>) {
    // Small: held for every child's life, and stderr lines are few and short (longer
    // ones still arrive whole: `lines` reads on).
    let mut lines = BufReader::with_capacity(1024, stderr).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(mut line)) => {
                if line.len() > 4096 {
                    let mut cut = 4096;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                    line.push('…');
                }
                let session = label.lock().map(|l| l.clone()).unwrap_or_default();
                tracing::info!(target: "mcp_edge::child", backend = %backend, pid, session = %session, "{line}");
            }
            Ok(None) => break,
            Err(_) => continue,
        }
    }
}

/// A started child, owned by its supervisor task: it holds the child's slot under
/// `proxy.max_children` and its entry in the count until the child is reaped.
struct Running {
    child: Child,
    pid: i32,
    backend: Arc<str>,
    _permit: OwnedSemaphorePermit,
    counted: Counted,
}

impl Running {
    /// Reap the child when it exits, or stop it (SIGTERM, SIGKILL after `grace`) when
    /// its [`ChildProc`] is dropped or its stdout turned out broken.
    async fn supervise(
        mut self,
        grace: Duration,
        stop_rx: oneshot::Receiver<()>,
        broken: CancellationToken,
        exit_tx: watch::Sender<bool>,
    ) {
        let (pid, backend) = (self.pid, self.backend.clone());
        let status = tokio::select! {
            status = self.child.wait() => {
                let _ = exit_tx.send(true);
                status.ok()
            }
            _ = async {
                tokio::select! {
                    _ = stop_rx => {}
                    _ = broken.cancelled() => {}
                }
            } => {
                signal_group(pid, Signal::SIGTERM);
                match tokio::time::timeout(grace, self.child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        tracing::warn!(backend = %backend, pid, "backend process ignored SIGTERM; killing its process group");
                        signal_group(pid, Signal::SIGKILL);
                        self.child.wait().await.ok()
                    }
                }
            }
        };
        // Stragglers of the tree (grandchildren that outlived the leader) go too.
        signal_group(pid, Signal::SIGKILL);
        drop(self.counted);
        // The place is free before anyone waiting for the exit hears of it.
        drop(self._permit);
        let _ = exit_tx.send(true);
        match status {
            Some(s) if s.success() => {
                tracing::info!(backend = %backend, pid, "backend process exited")
            }
            Some(s) => {
                tracing::info!(backend = %backend, pid, status = %s, "backend process exited")
            }
            None => tracing::warn!(backend = %backend, pid, "backend process: wait failed"),
        }
    }
}

/// Longest stdout line passed on (a JSON-RPC message); longer is treated as garbage.
const MAX_LINE: usize = 16 << 20;

/// Pass the child's stdout on to rmcp, as long as each line is JSON.
fn check_stdout(
    stdout: ChildStdout,
    backend: Arc<str>,
    pid: i32,
    label: Arc<Mutex<String>>,
    broken: CancellationToken,
) -> CheckedStdout {
    CheckedStdout {
        inner: stdout,
        line: Vec::new(),
        ended: false,
        backend,
        pid,
        label,
        broken,
    }
}

/// The longest unfinished line kept between reads without giving its memory back.
const KEPT_LINE_CAPACITY: usize = 64 << 10;

/// A child's stdout as rmcp reads it: each line is checked to be JSON as it passes,
/// in the reader's own task (no task of its own, no copy through a pipe, no wake-up
/// per message). The child's bytes are read straight into rmcp's buffer and checked
/// there (no buffer or copy of its own), except a line split across reads, whose
/// start is kept until its end arrives. The first line that is not JSON (or is longer
/// than [`MAX_LINE`]) stops the child: it is logged, `broken` is cancelled and the
/// reader sees the end (a line's start already passed is dropped by rmcp at the end).
pub struct CheckedStdout {
    inner: ChildStdout,
    /// The start of a line split across reads (no newline yet).
    line: Vec<u8>,
    ended: bool,
    backend: Arc<str>,
    pid: i32,
    label: Arc<Mutex<String>>,
    broken: CancellationToken,
}

impl CheckedStdout {
    /// Is `line` (no newline) one rmcp may read? Blank lines are (rmcp skips them).
    fn acceptable(&self, line: &[u8]) -> bool {
        let text = line.trim_ascii();
        if text.is_empty() {
            return true;
        }
        if line.len() <= MAX_LINE && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() {
            return true;
        }
        let shown = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
        let session = self.label.lock().map(|l| l.clone()).unwrap_or_default();
        tracing::error!(
            backend = %self.backend, pid = self.pid, session = %session, line = %shown,
            "backend process wrote something other than JSON-RPC to stdout; stopping it (log to stderr instead)"
        );
        self.broken.cancel();
        false
    }

    /// Check the lines in freshly read `bytes`; `Some(n)`: only the first `n` bytes
    /// pass, the line after them is not JSON.
    fn check(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &bytes[pos..]) {
            let end = pos + i;
            let ok = if self.line.is_empty() {
                self.acceptable(&bytes[pos..end])
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[pos..end]);
                let ok = self.acceptable(&line);
                line.clear();
                if line.capacity() <= KEPT_LINE_CAPACITY {
                    self.line = line;
                }
                ok
            };
            if !ok {
                return Some(pos);
            }
            pos = end + 1;
        }
        self.line.extend_from_slice(&bytes[pos..]);
        if self.line.len() > MAX_LINE {
            let line = std::mem::take(&mut self.line);
            self.acceptable(&line);
            return Some(pos);
        }
        None
    }
}

impl tokio::io::AsyncRead for CheckedStdout {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let start = out.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, out) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if out.filled().len() > start => {
                if let Some(passed) = this.check(&out.filled()[start..]) {
                    out.set_filled(start + passed);
                    this.ended = true;
                }
                Poll::Ready(Ok(()))
            }
            // The end (or a read error): a last line without a newline still counts.
            Poll::Ready(_) => {
                this.ended = true;
                let line = std::mem::take(&mut this.line);
                if !line.is_empty() && this.acceptable(&line) && out.remaining() > 0 {
                    out.put_slice(b"\n");
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

fn signal_group(pid: i32, signal: Signal) {
    if pid > 1 {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// A running child. Dropping it stops the child (SIGTERM, then SIGKILL) and reaps it.
pub struct ChildProc {
    pid: i32,
    _stop: oneshot::Sender<()>,
    exited: watch::Receiver<bool>,
}

impl ChildProc {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }

    /// Becomes true once the child has exited and been reaped, and its place under
    /// `proxy.max_children` is free again.
    pub fn exit_watch(&self) -> watch::Receiver<bool> {
        self.exited.clone()
    }
}

/// When the edge is PID 1 (a container without `init: true` / `tini`), orphaned
/// grandchildren are re-parented to it and must be reaped by it. This task reaps every
/// exited child that is not one of ours (ours are reaped by their supervisor task).
pub fn start_pid1_reaper() -> Option<tokio::task::JoinHandle<()>> {
    if std::process::id() != 1 {
        return None;
    }
    tracing::info!("running as PID 1: reaping re-parented processes");
    Some(tokio::spawn(async {
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            match sigchld.as_mut() {
                Some(s) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.recv()).await;
                }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
            loop {
                let peek = waitid(
                    Id::All,
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
                );
                let pid = match peek {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(status) => match status.pid() {
                        Some(pid) => pid,
                        None => break,
                    },
                };
                if is_ours(pid.as_raw()) {
                    // Ours: its supervisor task reaps it (tokio's SIGCHLD handling).
                    break;
                }
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// The stdout of `sh -c script`, checked.
    fn checked(script: &str) -> (CheckedStdout, CancellationToken, Child) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let broken = CancellationToken::new();
        let stdout = check_stdout(
            child.stdout.take().unwrap(),
            "t".into(),
            0,
            Arc::default(),
            broken.clone(),
        );
        (stdout, broken, child)
    }

    #[tokio::test]
    async fn json_lines_pass_and_the_first_other_line_ends_the_stream() {
        let (mut out, broken, mut child) = checked(
            r#"printf '{"a":1}\n\n  {"b":[2,'; sleep 0.1; printf '3]}\nnot json\n{"c":3}\n'"#,
        );
        let mut text = String::new();
        out.read_to_string(&mut text).await.unwrap();
        assert_eq!(
            text, "{\"a\":1}\n\n  {\"b\":[2,3]}\n",
            "split reads join; blank lines pass (rmcp skips them)"
        );
        assert!(broken.is_cancelled());
        let _ = child.wait().await;
    }

    #[tokio::test]
    async fn a_line_that_turns_out_not_json_after_a_split_read_ends_the_stream() {
        let (mut out, broken, mut child) =
            checked(r#"printf '{"a":1}\n{"b":'; sleep 0.1; printf ' oops\n{"c":3}\n'"#);
        let mut text = String::new();
        out.read_to_string(&mut text).await.unwrap();
        // The start already passed; rmcp drops an unfinished line at the end.
        assert_eq!(text, "{\"a\":1}\n{\"b\":");
        assert!(broken.is_cancelled());
        let _ = child.wait().await;
    }

    #[tokio::test]
    async fn a_last_line_without_a_newline_still_counts() {
        let (mut out, broken, mut child) = checked(r#"printf '{"a":1}\n{"z":0}'"#);
        let mut text = String::new();
        out.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"z\":0}\n");
        assert!(!broken.is_cancelled());
        let _ = child.wait().await;
    }

    #[tokio::test]
    async fn a_line_longer_than_the_read_buffer_arrives_whole() {
        let (mut out, _, mut child) =
            checked(r#"printf '{"x":"'; head -c 100000 /dev/zero | tr '\0' y; printf '"}\n'"#);
        let mut text = String::new();
        out.read_to_string(&mut text).await.unwrap();
        assert_eq!(text.len(), 100_000 + 9);
        assert!(text.ends_with("y\"}\n"));
        let _ = child.wait().await;
    }
}
