//! Several replicas behind a real L4 balancer behave as one server: three edge
//! processes (the real binary), HAProxy in `mode tcp` round robin sending the PROXY
//! protocol v2, and one Redis, all on loopback and started here. Clients open a new
//! connection per request, so the requests of one session land on different replicas.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::backends::{manifest, node_modules, python_sdk_installed};
use crate::common::haproxy::{Haproxy, ProxyHeader};
use crate::common::redis::Redis;
use crate::common::{self, Fixture, free_port};

const SESSION_HEADER: &str = "mcp-session-id";

/// HAProxy connects from this address, and only this address may send PROXY headers;
/// the tests' own direct connections come from 127.0.0.1 and are untrusted.
const BALANCER_SOURCE: &str = "127.0.0.5";
const DORA_KEY: &str = "dora-key-0123456789abcdef";
const ERIN_KEY: &str = "erin-key-0123456789abcdef";
const FERN_KEY: &str = "fern-key-0123456789abcdef";
/// The guessing client connects from here, so its lockout is its own.
const GUESSER: [u8; 4] = [127, 0, 0, 9];

struct Replica {
    child: Option<tokio::process::Child>,
    port: u16,
    peer: u16,
    admin: u16,
    log: Arc<Mutex<String>>,
}

struct Replicas {
    fx: Fixture,
    ring: PathBuf,
    redis: Redis,
    nodes: Vec<Replica>,
    lb: Haproxy,
}

impl Replicas {
    async fn start(extra: &[(&str, &str)]) -> Replicas {
        let fx = Fixture::new();
        let secrets = fx.dir.path().join("run/secrets");
        let mut keys = std::fs::read_to_string(&fx.keys_path).unwrap();
        // Budgets small enough to count exactly: no refill within a test.
        keys.push_str(&format!(
            "dora {DORA_KEY} rate=1/hour burst=4\nerin {ERIN_KEY} rate=1/hour burst=6\n\
             fern {FERN_KEY} rate=1/hour burst=4\n"
        ));
        std::fs::write(&fx.keys_path, keys).unwrap();
        let ring = secrets.join("session_keys");
        std::fs::write(
            &ring,
            format!("{}\n", *mcp_edge::cluster::seal::generate_key()),
        )
        .unwrap();
        let config = fx.dir.path().join("edge.toml");
        std::fs::write(
            &config,
            format!(
                "[[backends]]\nname = \"py\"\nkind = \"stdio\"\ncommand = [\"python3\", \"{}\"]\n",
                manifest("tests/python/stdio_server.py")
            ),
        )
        .unwrap();
        let redis = Redis::start();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(spawn_replica(&fx, &config, &ring, &redis, extra).await);
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let lb = Haproxy::start(&ports, ProxyHeader::V2, BALANCER_SOURCE);
        Replicas {
            fx,
            ring,
            redis,
            nodes,
            lb,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/mcp", self.lb.port)
    }

    fn direct_url(&self, i: usize) -> String {
        format!("https://localhost:{}/mcp", self.nodes[i].port)
    }

    /// A client that opens a new connection for every request.
    fn http(&self) -> reqwest::Client {
        self.http_from([127, 0, 0, 1])
    }

    /// The same, connecting from another loopback address.
    fn http_from(&self, local: [u8; 4]) -> reqwest::Client {
        mcp_edge::tls::install_crypto_provider();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.fx.ca_pem.as_bytes()).unwrap()])
            .pool_max_idle_per_host(0)
            .local_address(std::net::IpAddr::from(local))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Which replica owns a session, read from its sealed id.
    fn owner_of(&self, session: &str) -> usize {
        let ring = mcp_edge::cluster::seal::KeyRing::load_file(&self.ring).unwrap();
        let claims = ring.open(session).expect("a session id sealed by the ring");
        self.nodes
            .iter()
            .position(|n| claims.owner == format!("127.0.0.1:{}", n.peer))
            .unwrap_or_else(|| panic!("owner {} is none of the replicas", claims.owner))
    }

    /// SIGTERM one replica and wait for it to exit.
    async fn stop(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("running");
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    }

    /// How many replicas took at least one `tools/call` from a client through the
    /// balancer (not a hop from a peer), with the client's own address from PROXY v2.
    fn replicas_that_served_calls(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| {
                n.log.lock().unwrap().lines().any(|l| {
                    serde_json::from_str::<Value>(l).is_ok_and(|v| {
                        v["mcp_method"] == "tools/call"
                            && v["hop"] != "from peer"
                            && v["remote"]
                                .as_str()
                                .is_some_and(|r| r.starts_with("127.0.0.1:"))
                    })
                })
            })
            .count()
    }

    /// Calls that a replica forwarded to the session's owner.
    fn forwarded_calls(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                n.log
                    .lock()
                    .unwrap()
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<Value>(l).is_ok_and(|v| {
                            v["mcp_method"] == "tools/call"
                                && v["hop"].as_str().is_some_and(|h| h.starts_with("to "))
                        })
                    })
                    .count()
            })
            .sum()
    }

    /// `tools/call`s counted by all replicas' `/metrics` together.
    async fn tool_calls_counted(&self) -> f64 {
        let mut sum = 0.0;
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", n.admin))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            sum += text
                .lines()
                .filter(|l| l.starts_with("mcp_edge_tool_call_duration_seconds_count"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        sum
    }

    fn log(&self, i: usize) -> String {
        self.nodes[i].log.lock().unwrap().clone()
    }
}

async fn spawn_replica(
    fx: &Fixture,
    config: &std::path::Path,
    ring: &std::path::Path,
    redis: &Redis,
    extra: &[(&str, &str)],
) -> Replica {
    let peer = free_port();
    let peer_listen = format!("127.0.0.1:{peer}");
    let redis_url = redis.url();
    let trusted = format!("{BALANCER_SOURCE}/32");
    let admin = free_port();
    let admin_listen = format!("127.0.0.1:{admin}");
    let log = Arc::new(Mutex::new(String::new()));
    let mut env = vec![
        ("MCP_EDGE_CONFIG", config.to_str().unwrap()),
        ("MCP_PEER_LISTEN", peer_listen.as_str()),
        ("MCP_SESSION_KEYS_FILE", ring.to_str().unwrap()),
        ("MCP_RATE_LIMIT_STORE", "redis"),
        ("MCP_REDIS_URL", redis_url.as_str()),
        ("MCP_REPLICAS", "3"),
        ("MCP_PROXY_PROTOCOL_FROM", trusted.as_str()),
        ("MCP_FAILED_AUTH_BURST", "4"),
        ("MCP_FAILED_AUTH_RATE", "1/hour"),
        // alice and bob drive the SDK clients: a budget they cannot exhaust, however
        // fast the machine (dora, erin and fern carry the small budgets under test).
        ("MCP_RATE_LIMIT", "100000/min"),
        ("MCP_RATE_BURST", "10000"),
        ("MCP_LOG_LEVEL", "info"),
        ("MCP_METRICS_LISTEN", admin_listen.as_str()),
        ("PATH", env!("PATH")),
    ];
    env.extend_from_slice(extra);
    let (child, port) = common::spawn_edge(fx, &env, Some(log.clone())).await;
    Replica {
        child: Some(child),
        port,
        peer,
        admin,
        log,
    }
}

/// The official Python SDK through the balancer; the test drives its two phases.
struct PythonClient {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl PythonClient {
    fn start(r: &Replicas) -> PythonClient {
        let mut child = tokio::process::Command::new("python3")
            .arg(manifest("tests/python/replicas_client.py"))
            .env("MCP_EDGE_URL", r.url())
            .env("MCP_EDGE_KEY", common::ALICE_KEY)
            .env("MCP_EDGE_CA", &r.fx.ca_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        PythonClient { child, lines }
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("python client answers in time")
            .unwrap()
            .unwrap_or_else(|| panic!("python client ended early"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    async fn proceed(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
}

fn check_first_session(seen: &Value) {
    let echoes: Vec<String> = (0..20).map(|i| format!("echo: call {i}")).collect();
    assert_eq!(seen["echoes"], json!(echoes), "{seen}");
    // The child's state survived calls that reached different replicas.
    assert_eq!(seen["counts"], json!(["1", "2", "3", "4", "5"]), "{seen}");
    assert_eq!(seen["counted"], "counted to 4", "{seen}");
    let progress: Vec<f64> = seen["progress"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0], "{seen}");
    assert_eq!(seen["sampled"], "model said: forty-two", "{seen}");
    assert!(
        seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "count"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_clients_through_an_l4_balancer_see_one_server() {
    python_sdk_installed();
    let mut r = Replicas::start(&[]).await;

    let mut py = PythonClient::start(&r);
    let first = py.next().await;
    check_first_session(&first);
    let py_session = first["session"].as_str().unwrap().to_owned();

    // The TypeScript SDK, one connection per request.
    let nm = node_modules();
    let out = tokio::process::Command::new("node")
        .arg(manifest("tests/node/replicas_client.mjs"))
        .env("MCP_EDGE_URL", r.url())
        .env("MCP_EDGE_KEY", common::BOB_KEY)
        .env("NODE_EXTRA_CA_CERTS", &r.fx.ca_path)
        .env("NODE_PATH", &nm)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ts: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    check_first_session(&ts);
    assert!(ts["connections"].as_u64().unwrap() >= 28, "{ts}");
    assert!(
        r.replicas_that_served_calls() >= 2,
        "calls were not spread over the replicas"
    );
    assert!(
        r.forwarded_calls() >= 10,
        "calls were not forwarded to owners"
    );
    // Each SDK made 27 calls; a forwarded one is counted once in the cluster (by the
    // replica that answered the client), not again by its owner.
    assert_eq!(r.tool_calls_counted().await, 54.0);

    // Another principal presenting alice's session id: 404 on every replica; a
    // tampered id: 404.
    let http = r.http();
    let mut tampered = py_session.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for i in 0..3 {
        for (key, id) in [
            (common::BOB_KEY, py_session.as_str()),
            (common::ALICE_KEY, tampered.as_str()),
        ] {
            let status = list_tools(&http, &r.direct_url(i), key, id).await.status();
            assert_eq!(status, 404, "replica {i}");
        }
    }

    // A second session of alice's owned by another replica than the first one's owner.
    let owner = r.owner_of(&py_session);
    let other = (owner + 1) % 3;
    let other_session = initialize(&http, &r.direct_url(other), common::ALICE_KEY).await;
    assert_eq!(r.owner_of(&other_session), other);

    // A GET stream opened on a third replica carries the notifications of a session
    // owned by `other`, triggered through yet another replica.
    let watcher = r.http();
    let mut stream = watcher
        .get(r.direct_url((other + 1) % 3))
        .bearer_auth(common::ALICE_KEY)
        .header(SESSION_HEADER, &other_session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let announced = call_tool(
        &http,
        &r.direct_url((other + 2) % 3),
        common::ALICE_KEY,
        &other_session,
        "announce",
    )
    .await;
    assert_eq!(announced.status(), 200);
    assert!(announced.text().await.unwrap().contains("announced"));
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("notifications/resources/list_changed") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            _ => break,
        }
    }
    assert!(
        seen.contains("notifications/resources/list_changed"),
        "GET stream saw: {seen}"
    );
    drop(stream);

    // Stop the owner: its session is gone (404), the SDK client re-initializes and
    // goes on; the other replica's session is unaffected, whichever replica serves it.
    r.stop(owner).await;
    py.proceed().await;
    let old = py.next().await;
    assert!(old["old_session_error"].is_string(), "{old}");
    let again = py.next().await;
    assert_eq!(again["counts"], json!(["1", "2", "3"]), "{again}");
    assert_ne!(again["new_session"], first["session"]);
    for i in (0..3).filter(|&i| i != owner) {
        let response = list_tools(&http, &r.direct_url(i), common::ALICE_KEY, &other_session).await;
        assert_eq!(response.status(), 200, "replica {i}");
        let body = response.text().await.unwrap();
        assert!(body.contains("count"), "{body}");
        let gone = list_tools(&http, &r.direct_url(i), common::ALICE_KEY, &py_session).await;
        assert_eq!(gone.status(), 404, "replica {i}");
    }
    let _ = r.log(owner);
}

async fn initialize(http: &reqwest::Client, url: &str, key: &str) -> String {
    let response = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()[SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = response.text().await;
    let body = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let initialized = rpc(http, url, key, &id, body).await;
    assert_eq!(initialized.status(), 202);
    id
}

/// A JSON-RPC POST within `session`, as a 2025-06-18 client sends it.
async fn rpc(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    session: &str,
    body: Value,
) -> reqwest::Response {
    http.post(url)
        .bearer_auth(key)
        .header(SESSION_HEADER, session)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn list_tools(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    session: &str,
) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    rpc(http, url, key, session, body).await
}

async fn call_tool(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    session: &str,
    tool: &str,
) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}});
    rpc(http, url, key, session, body).await
}

async fn ping(http: &reqwest::Client, url: &str, key: &str, session: &str) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "ping"});
    rpc(http, url, key, session, body).await.status().as_u16()
}

/// A `ping` with no session, for the auth checks; the response as received.
async fn sessionless_ping(http: &reqwest::Client, url: &str, key: &str) -> reqwest::Response {
    http.post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap()
}

/// `count` calls of one principal's session through the balancer: how many passed.
async fn calls_through_balancer(
    r: &Replicas,
    key: &str,
    session: &str,
    count: usize,
) -> (usize, usize) {
    let http = r.http();
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..count {
        match list_tools(&http, &r.url(), key, session)
            .await
            .status()
            .as_u16()
        {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_lockout_and_revocation_hold_across_replicas() {
    let mut r = Replicas::start(&[]).await;
    let http = r.http();

    // dora's budget is 4 calls in all, not 4 per replica.
    let dora = initialize(&http, &r.url(), DORA_KEY).await;
    assert_eq!(
        calls_through_balancer(&r, DORA_KEY, &dora, 12).await,
        (4, 8)
    );

    // The failed-auth lockout (burst 4) holds across replicas: the client address
    // comes from the PROXY header, not from the balancer.
    let guesser = r.http_from(GUESSER);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = sessionless_ping(&guesser, &r.url(), common::WRONG_KEY).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429, 429, 429]);
    // The lockout is of the address, on every replica: a valid key from it waits too.
    let locked = sessionless_ping(&guesser, &r.url(), FERN_KEY).await;
    assert_eq!(locked.status(), 429);
    // Straight to a replica, from an address that never guessed: not locked out.
    let direct = sessionless_ping(&http, &r.direct_url(0), common::WRONG_KEY).await;
    assert_eq!(direct.status(), 401);

    // One session per replica for the probes below (made while Redis is up).
    let probe_keys = [common::ALICE_KEY, common::BOB_KEY, common::CAROL_KEY];
    let mut probes = Vec::new();
    for (i, key) in probe_keys.iter().enumerate() {
        probes.push(initialize(&http, &r.direct_url(i), key).await);
    }

    // Redis goes away: the fallback (budget / replicas on each replica) applies and
    // nothing fails but the over-budget calls.
    r.redis.stop();
    let erin = initialize(&http, &r.url(), ERIN_KEY).await;
    let (ok, limited) = calls_through_balancer(&r, ERIN_KEY, &erin, 12).await;
    assert_eq!(ok + limited, 12);
    assert!((2..=6 + 3).contains(&ok), "fallback allowed {ok}");

    // Redis is back (empty). Once every replica has probed it again — a ping on
    // replica i under principal i lands in Redis as key i — limits are global again.
    r.redis.restart();
    let back = common::eventually(Duration::from_secs(20), async || {
        for (i, key) in probe_keys.iter().enumerate() {
            ping(&http, &r.direct_url(i), key, &probes[i]).await;
        }
        r.redis.cli(&["DBSIZE"]).is_some_and(|n| n.trim() == "3")
    });
    assert!(back.await, "the replicas did not return to Redis");
    let fern = initialize(&http, &r.url(), FERN_KEY).await;
    assert_eq!(
        calls_through_balancer(&r, FERN_KEY, &fern, 12).await,
        (4, 8)
    );

    // Removing a key from the shared keys file refuses it on every replica within 2 s.
    let keys = std::fs::read_to_string(&r.fx.keys_path).unwrap();
    let without_bob: String = keys
        .lines()
        .filter(|l| !l.starts_with("bob "))
        .map(|l| format!("{l}\n"))
        .collect();
    let removed = Instant::now();
    std::fs::write(&r.fx.keys_path, without_bob).unwrap();
    for i in 0..3 {
        let refused = common::eventually(Duration::from_secs(2), async || {
            let response = sessionless_ping(&http, &r.direct_url(i), common::BOB_KEY).await;
            response.status() == 401
        })
        .await;
        assert!(refused, "replica {i} still accepts the removed key");
    }
    assert!(removed.elapsed() < Duration::from_secs(3));
    r.stop(2).await;
}
