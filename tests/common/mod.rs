//! Shared harness: a test CA, secrets on disk, and the real server on port 0.

#![allow(dead_code)]

pub mod haproxy;
pub mod jwt;
pub mod redis;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_edge::app::{self, Running};
use mcp_edge::config::{self, Config, FlagOverrides, Sources};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use tempfile::TempDir;

pub const ALICE_KEY: &str = "alice-key-0123456789abcdef";
pub const BOB_KEY: &str = "bob-key-0123456789abcdef";
pub const CAROL_KEY: &str = "carol-key-0123456789abcdef";
pub const WRONG_KEY: &str = "wrong-key-0123456789abcdef";

/// Files a deployment would mount as secrets, plus a docs folder.
pub struct Fixture {
    pub dir: TempDir,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub keys_path: PathBuf,
    pub docs_dir: PathBuf,
}

/// A CA and a server certificate for localhost signed by it.
pub fn test_pki(names: &[&str]) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcp-edge test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("run/secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        let (ca_pem, cert_pem, key_pem) = test_pki(&["localhost", "127.0.0.1"]);
        let ca_path = dir.path().join("ca.pem");
        let cert_path = secrets.join("tls_cert");
        let key_path = secrets.join("tls_key");
        std::fs::write(&ca_path, &ca_pem).unwrap();
        std::fs::write(&cert_path, cert_pem).unwrap();
        std::fs::write(&key_path, key_pem).unwrap();
        let keys_path = secrets.join("api_keys");
        std::fs::write(
            &keys_path,
            format!(
                "# principal key [rate=… burst=…]\nalice {ALICE_KEY}\nbob {BOB_KEY}\ncarol {CAROL_KEY} rate=60/min burst=3\n"
            ),
        )
        .unwrap();
        let docs_dir = dir.path().join("docs");
        std::fs::create_dir_all(docs_dir.join("guide")).unwrap();
        std::fs::write(
            docs_dir.join("guide/tls.md"),
            "# Terminating TLS\n\nThe edge terminates TLS with rustls. Certificates are reloaded \
             from secret files. TLS TLS TLS.\n",
        )
        .unwrap();
        std::fs::write(
            docs_dir.join("rate-limits.md"),
            "# Rate limits\n\nEach principal gets a GCRA budget; over it the edge answers 429 \
             with Retry-After. The TLS layer is unrelated.\n",
        )
        .unwrap();
        std::fs::write(
            docs_dir.join("notes.txt"),
            "Plain text notes about sessions and the edge.\n",
        )
        .unwrap();
        Fixture {
            dir,
            ca_pem,
            ca_path,
            cert_path,
            key_path,
            keys_path,
            docs_dir,
        }
    }

    /// The environment of a real deployment, listening on 127.0.0.1:0.
    pub fn env(&self) -> HashMap<String, String> {
        let p = |p: &Path| p.display().to_string();
        [
            ("MCP_HOST", "127.0.0.1".to_string()),
            ("MCP_PORT", "0".to_string()),
            ("MCP_TLS_CERT_FILE", p(&self.cert_path)),
            ("MCP_TLS_KEY_FILE", p(&self.key_path)),
            ("MCP_API_KEYS_FILE", p(&self.keys_path)),
            ("MCP_DOCS_DIR", p(&self.docs_dir)),
            ("MCP_SHUTDOWN_GRACE", "5s".to_string()),
            // The admin (metrics) listener on a free port, so servers run side by side.
            ("MCP_METRICS_LISTEN", "127.0.0.1:0".to_string()),
            // Audit records would fill the test output; the audit tests turn them on.
            ("MCP_AUDIT_OUTPUT", "off".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

pub fn load(env: &HashMap<String, String>) -> Config {
    load_file(None, env)
}

pub fn load_file(file: Option<PathBuf>, env: &HashMap<String, String>) -> Config {
    config::load(Sources {
        file,
        env,
        flags: FlagOverrides::default(),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The real server, started in this process.
pub struct Edge {
    pub fx: Fixture,
    pub running: Running,
}

impl Edge {
    pub async fn start() -> Edge {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> Edge {
        let fx = Fixture::new();
        let mut env = fx.env();
        customize(&mut env);
        let running = app::start(load(&env)).await.expect("server starts");
        Edge { fx, running }
    }

    /// Start with a config file made from the fixture (plus the fixture's env).
    pub async fn start_with_file(
        toml: impl FnOnce(&Fixture) -> String,
        customize: impl FnOnce(&mut HashMap<String, String>),
    ) -> Edge {
        let fx = Fixture::new();
        let path = fx.dir.path().join("edge.toml");
        std::fs::write(&path, toml(&fx)).unwrap();
        let mut env = fx.env();
        customize(&mut env);
        let running = app::start(load_file(Some(path), &env))
            .await
            .expect("server starts");
        Edge { fx, running }
    }

    pub fn port(&self) -> u16 {
        self.running.addr().port()
    }

    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.port())
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    /// An HTTPS client that trusts only the test CA.
    pub fn http(&self) -> reqwest::Client {
        client_trusting(&self.fx.ca_pem)
    }

    /// rmcp's own client over HTTPS with a bearer key (session mode).
    pub async fn mcp(&self, key: &str) -> RunningService<RoleClient, ()> {
        let transport = StreamableHttpClientTransport::with_client(
            self.http(),
            StreamableHttpClientTransportConfig::with_uri(self.url()).auth_header(key),
        );
        ().serve(transport).await.expect("MCP client connects")
    }

    /// A JSON-RPC POST to /mcp with the headers a client sends.
    pub fn post(&self, key: Option<&str>) -> reqwest::RequestBuilder {
        let mut rb = self
            .http()
            .post(self.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(key) = key {
            rb = rb.bearer_auth(key);
        }
        rb
    }

    /// Open a session by hand; returns its id.
    pub async fn initialize(&self, key: &str) -> reqwest::Response {
        self.post(Some(key))
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "test", "version": "1"}}
            }))
            .send()
            .await
            .unwrap()
    }
}

impl Edge {
    /// Open a session as a client does (`initialize`, then `notifications/initialized`).
    pub async fn session(&self, key: &str) -> String {
        let r = self.initialize(key).await;
        assert_eq!(r.status(), 200, "initialize");
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.bytes().await;
        let r = self
            .rpc(
                key,
                &id,
                &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(r.status(), 202, "notifications/initialized");
        id
    }

    /// A JSON-RPC POST within a session.
    pub async fn rpc(
        &self,
        key: &str,
        session: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.post(Some(key))
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `tools/list` within a session: one call against the principal's budget.
    pub async fn list_tools(&self, key: &str, session: &str) -> reqwest::Response {
        self.rpc(
            key,
            session,
            &serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await
    }
}

impl Edge {
    /// A POST of `body` as a 2026-07-28 stateless request, with the headers that
    /// version asks for (`Mcp-Method`, and `Mcp-Name` for a call).
    pub fn stateless(
        &self,
        client: &reqwest::Client,
        key: &str,
        body: &serde_json::Value,
    ) -> reqwest::RequestBuilder {
        let mut rb = client
            .post(self.url())
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", body["method"].as_str().unwrap_or_default());
        if let Some(name) = body["params"]["name"].as_str() {
            rb = rb.header("mcp-name", name);
        }
        rb.json(body)
    }

    /// A stateless `tools/call` of `name` by `key`'s principal; the text of its result
    /// (or of its error).
    pub async fn stateless_text(
        &self,
        key: &str,
        name: &str,
        arguments: serde_json::Value,
    ) -> String {
        let body = stateless_call(1, name, arguments, false);
        let r = self
            .stateless(&self.http(), key, &body)
            .send()
            .await
            .unwrap();
        answer_text(&r.text().await.unwrap())
    }
}

/// The text of the answer to request id 1 in a JSON or SSE reply body: its result's
/// first text content, or its error's message.
pub fn answer_text(text: &str) -> String {
    let reply = messages(text)
        .into_iter()
        .find(|m| m["id"] == 1)
        .unwrap_or_else(|| panic!("no answer: {text}"));
    match reply["result"]["content"][0]["text"].as_str() {
        Some(t) => t.to_owned(),
        None => reply["error"]["message"]
            .as_str()
            .unwrap_or(text)
            .to_owned(),
    }
}

/// A 2026-07-28 stateless `tools/call` as a client sends it by hand; with
/// `progress`, it asks for progress (token `p<id>`).
pub fn stateless_call(
    id: u64,
    name: &str,
    arguments: serde_json::Value,
    progress: bool,
) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "curl-like", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    if progress {
        meta["progressToken"] = serde_json::json!(format!("p{id}"));
    }
    serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
           "params":{"name":name,"arguments":arguments,"_meta":meta}})
}

pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    mcp_edge::tls::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The JSON-RPC messages in an SSE or JSON response body.
pub fn messages(body: &str) -> Vec<serde_json::Value> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-edge")
}

/// Poll `check` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The address of the server's "listening" log line, JSON or pretty (`addr=…`).
fn listening_addr(line: &str) -> Option<std::net::SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return (v["message"] == "listening").then(|| v["addr"].as_str().unwrap().parse().unwrap());
    }
    if !line.contains(" listening ") {
        return None;
    }
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="));
    Some(
        addr.unwrap_or_else(|| panic!("no plain addr= in {line:?}"))
            .parse()
            .unwrap(),
    )
}

/// Start the real binary and read its bound port from its "listening" log line (JSON
/// unless `extra_env` sets `MCP_LOG_FORMAT`).
pub async fn spawn_edge(
    fx: &Fixture,
    extra_env: &[(&str, &str)],
    log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
) -> (tokio::process::Child, u16) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(bin())
        .env_clear()
        .envs(fx.env())
        .env("MCP_LOG_FORMAT", "json")
        .envs(extra_env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut early = String::new();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            early.push_str(&line);
            early.push('\n');
            if let Some(log) = &log {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            if let Some(addr) = listening_addr(&line) {
                return addr.port();
            }
        }
        panic!("server exited before listening; its log:\n{early}");
    })
    .await
    .expect("server starts");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(log) = &log {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    (child, port)
}

/// The Prometheus text an admin listener serves at `/metrics`.
pub async fn metrics_text(admin: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A port free on loopback right now (for servers the tests start). Taken below the
/// kernel's ephemeral range (32768-60999 here), where no test's outgoing connection
/// gets its source port: a port picked by binding port 0 came from that range, and
/// under load another test's connection could take it before the server bound it
/// (a replica then exited before listening). Each call hands out a different port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20000;
    const COUNT: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}-{}", FIRST + COUNT - 1);
}
