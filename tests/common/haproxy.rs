//! A real HAProxy for tests (Debian's `haproxy`): `mode tcp`, round robin over edge
//! replicas, optionally sending the PROXY protocol; killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// HAProxy in TCP mode, round robin over `servers`; stopped on drop.
pub struct Haproxy {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

/// How HAProxy talks to the servers behind it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    None,
    V1,
    V2,
}

impl Haproxy {
    /// `source`: the address HAProxy connects from (so the edge can trust exactly it).
    pub fn start(servers: &[u16], header: ProxyHeader, source: &str) -> Haproxy {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let send = match header {
            ProxyHeader::None => "",
            ProxyHeader::V1 => " send-proxy",
            ProxyHeader::V2 => " send-proxy-v2",
        };
        let lines: String = servers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "    server edge{i} 127.0.0.1:{p} source {source} check inter 200ms fall 1 rise 2{send}\n"
                )
            })
            .collect();
        let cfg = format!(
            "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
             timeout client 60s\n    timeout server 60s\n    retries 3\n    option redispatch\n\n\
             frontend edge\n    bind 127.0.0.1:{port}\n    default_backend edges\n\n\
             backend edges\n    balance roundrobin\n{lines}"
        );
        let cfg_path: PathBuf = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = haproxy_process(&cfg_path);
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "haproxy did not listen on {port}"
        );
        Haproxy {
            port,
            child,
            _dir: dir,
        }
    }
}

fn haproxy_process(cfg: &Path) -> Child {
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy runs (apt-get install haproxy; .ci/run does this)")
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
