//! A real Redis for tests: Debian's `redis-server` on a free loopback port, no
//! persistence, killed when dropped. Stop and restart it on the same port to test
//! what the edge does while Redis is away.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Redis {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with_password(None)
    }

    /// With `--requirepass`: clients must AUTH with `password`.
    pub fn start_with_password(password: Option<&str>) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            password: password.map(str::to_owned),
            child: None,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT` (no password in it).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Write the password to a file, as a secret mount would hold it.
    pub fn password_file(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("redis_password");
        std::fs::write(&path, format!("{}\n", self.password.as_deref().unwrap())).unwrap();
        path
    }

    /// Kill the server (as a crash would); the port stays reserved for [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start (again) on the same port, with an empty data set, and wait until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        self.child = Some(
            cmd.spawn()
                .expect("redis-server runs (apt-get install redis-server)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|out| out.contains("PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Run one `redis-cli` command; its stdout.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "--no-auth-warning",
        ]);
        if let Some(password) = &self.password {
            cmd.args(["-a", password]);
        }
        let out = cmd.args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
