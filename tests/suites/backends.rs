//! MCP servers behind the edge: real stdio child processes (the official Python SDK,
//! `@modelcontextprotocol/server-everything`, a tiny dependency-free server), an
//! upstream HTTP server (a second edge), several backends at once, process handling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientConfig, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::ClientLifecycleMode;
use rmcp::service::ClientServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::common::*;

pub fn manifest(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

pub fn python_sdk_installed() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import mcp, httpx2"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the official MCP Python SDK is missing: pip install -r tests/python/requirements.txt (.ci/run does this)"
    );
}

pub fn node_modules() -> PathBuf {
    let dir = PathBuf::from(manifest("tests/node/node_modules"));
    assert!(
        dir.join("@modelcontextprotocol/server-everything").exists(),
        "npm packages missing: (cd tests/node && npm ci) — .ci/run does this"
    );
    dir
}

/// A stdio backend table for `script` under tests/python, tagged with `marker` in its env.
fn py_backend(name: &str, script: &str, marker: &str, extra: &str) -> String {
    format!(
        "[[backends]]\nname = \"{name}\"\nkind = \"stdio\"\ncommand = [\"python3\", \"{}\"]\nenv = {{ EDGE_TEST_MARKER = \"{marker}\"{extra} }}\n",
        manifest(&format!("tests/python/{script}"))
    )
}

/// Start the edge with `toml` as its config file (plus the harness's env).
pub async fn edge_with_config(
    toml: &str,
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> (Edge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, toml).unwrap();
    let path_text = path.display().to_string();
    let edge = Edge::start_with(move |env| {
        env.insert("MCP_EDGE_CONFIG".into(), path_text);
        customize(env);
    })
    .await;
    (edge, dir)
}

/// PIDs of live (non-zombie) processes whose environment carries `marker`.
pub fn processes_with_marker(marker: &str) -> Vec<i32> {
    let needle = format!("EDGE_TEST_MARKER={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = state
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim().chars().next().unwrap_or('?'))
            .unwrap_or('?');
        found.push((pid, state));
    }
    // Zombies count too: a zombie is a process nobody reaped.
    found.into_iter().map(|(pid, _)| pid).collect()
}

fn marker() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

async fn run_python_client(
    edge: &Edge,
    url: &str,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> Value {
    let out = tokio::process::Command::new("python3")
        .arg(manifest("tests/python/backend_client.py"))
        .args(extra_args)
        .env("MCP_EDGE_URL", url)
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("MCP_EDGE_CA", &edge.fx.ca_path)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn check_python_server_run(seen: &Value, p: &str, up: &str) {
    assert_eq!(seen["echo"], "echo: hi", "{seen}");
    assert_eq!(seen["counted"], "counted to 3", "{seen}");
    // Progress arrives with the client's own token (the SDK drops unknown tokens).
    let progress = seen["progress"].as_array().unwrap();
    assert_eq!(progress.len(), 3, "{seen}");
    assert_eq!(progress[2], json!([3.0, 3.0, "step 3"]), "{seen}");
    assert_eq!(
        seen["sampled"], "model said: 42 (to: meaning of life?)",
        "{seen}"
    );
    assert_eq!(seen["resource"], "hello from python", "{seen}");
    assert_eq!(seen["resource_uri"], format!("{up}note://hello"), "{seen}");
    assert_eq!(seen["templated"], "note bob", "{seen}");
    assert!(
        seen["templates"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{up}note://{{name}}"))),
        "{seen}"
    );
    assert_eq!(seen["prompt"], "Please greet Ada warmly.", "{seen}");
    for tool in ["echo", "slow_count", "ask_model", "crash"] {
        assert!(
            seen["tools"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("{p}{tool}"))),
            "{seen}"
        );
    }
}

#[tokio::test]
async fn python_sdk_server_behind_the_edge_end_to_end() {
    python_sdk_installed();
    let m = marker();
    let (edge, _dir) = edge_with_config(&py_backend("py", "stdio_server.py", &m, ""), |_| {}).await;
    let seen = run_python_client(&edge, &edge.url(), &[], &[]).await;
    assert_eq!(seen["server"], "py-test-server");
    check_python_server_run(&seen, "", "");
    // The session's child goes away with the session (the client sent DELETE).
    assert!(
        eventually(Duration::from_secs(15), async || {
            edge.running
                .backend()
                .live_children()
                .unwrap()
                .load(std::sync::atomic::Ordering::Relaxed)
                <= 1 // the pooled connection made by the start-up probe
        })
        .await
    );
    edge.running.shutdown().await;
    assert!(processes_with_marker(&m).is_empty());
}

#[tokio::test]
async fn legacy_sse_client_works_through_the_edge() {
    python_sdk_installed();
    let m = marker();
    let toml = format!(
        "[legacy_sse]\nenabled = true\n{}",
        py_backend("py", "stdio_server.py", &m, "")
    );
    let (edge, _dir) = edge_with_config(&toml, |_| {}).await;
    let url = format!("{}/sse", edge.base());
    let seen = run_python_client(&edge, &url, &["--sse"], &[]).await;
    check_python_server_run(&seen, "", "");

    // Same auth as /mcp: no key, no stream; someone else's session id is unknown.
    let r = edge.http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = edge
        .http()
        .post(format!("{}/messages?sessionId=nope", edge.base()))
        .bearer_auth(ALICE_KEY)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A stream of alice's: bob cannot post into it; bad input is a JSON-RPC error.
    let mut stream = edge
        .http()
        .get(&url)
        .bearer_auth(ALICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().expect("endpoint event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.starts_with("event: endpoint"), "{seen}");
    let endpoint = seen
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let post = |key: &str, body: &str| {
        edge.http()
            .post(format!("{}{endpoint}", edge.base()))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let r = post(BOB_KEY, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = post(ALICE_KEY, "not json").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700, "{body}");
    let r = edge
        .http()
        .post(format!("{}/messages", edge.base()))
        .bearer_auth(ALICE_KEY)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Revoking bob's key ends bob's legacy stream.
    let mut bobs = edge
        .http()
        .get(&url)
        .bearer_auth(BOB_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status(), 200);
    let first = bobs.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("endpoint"));
    std::fs::write(
        &edge.fx.keys_path,
        format!("alice {ALICE_KEY}\ncarol {CAROL_KEY}\n"),
    )
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = bobs.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the revoked key's legacy stream stays open");
    // The legacy session counts against the caps like any other, and closes with its stream.
    tokio::time::sleep(Duration::from_secs(6)).await; // past one session sweep
    assert_eq!(edge.running.state().sessions.len(), 1);
    drop(stream);
    assert!(
        eventually(Duration::from_secs(5), async || edge
            .running
            .state()
            .sessions
            .is_empty())
        .await
    );
    edge.running.shutdown().await;
    assert!(processes_with_marker(&m).is_empty());
}

#[tokio::test]
async fn legacy_sse_is_off_by_default() {
    let edge = Edge::start().await;
    let r = edge
        .http()
        .get(format!("{}/sse", edge.base()))
        .bearer_auth(ALICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn server_everything_behind_the_edge() {
    let nm = node_modules();
    let m = marker();
    let toml = format!(
        "[[backends]]\nname = \"everything\"\ncommand = [\"node\", \"{}\", \"stdio\"]\nenv = {{ EDGE_TEST_MARKER = \"{m}\" }}\n",
        nm.join("@modelcontextprotocol/server-everything/dist/index.js")
            .display()
    );
    let (edge, _dir) = edge_with_config(&toml, |_| {}).await;
    let out = tokio::process::Command::new("node")
        .arg(manifest("tests/node/everything_client.mjs"))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["echo"], "Echo: hello everything", "{seen}");
    assert!(seen["tools"].as_u64().unwrap() >= 10, "{seen}");
    assert!(seen["progress"].as_u64().unwrap() >= 2, "{seen}");
    assert!(seen["progressTokensOk"].as_bool().unwrap(), "{seen}");
    assert!(
        seen["sampling"]
            .as_str()
            .unwrap()
            .contains("from the test client"),
        "{seen}"
    );
    // roots/list from the server, answered by the client through the edge.
    assert!(
        seen["roots"]
            .as_str()
            .unwrap()
            .contains("file:///edge-test-root"),
        "{seen}"
    );
    assert!(!seen["resource"].as_str().unwrap().is_empty(), "{seen}");
    assert!(!seen["prompt"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(seen["terminated"], "ok", "the SDK's DELETE succeeded");
    edge.running.shutdown().await;
    assert!(processes_with_marker(&m).is_empty());
}

#[tokio::test]
async fn two_hundred_sessions_leave_no_child_behind() {
    let m = marker();
    let (edge, _dir) = edge_with_config(
        &py_backend(
            "tiny",
            "tiny_server.py",
            &m,
            ", TINY_SPAWN_GRANDCHILD = \"1\"",
        ),
        |env| {
            env.insert("MCP_MAX_SESSIONS_PER_PRINCIPAL".into(), "500".into());
            env.insert("MCP_RATE_LIMIT".into(), "100000/min".into());
            env.insert("MCP_RATE_BURST".into(), "10000".into());
            // 200 set-ups and tear-downs in a few seconds: more than the default
            // protocol burst (300) on a fast machine.
            env.insert("MCP_PROTOCOL_RATE".into(), "100000/min".into());
            env.insert("MCP_PROTOCOL_BURST".into(), "10000".into());
            env.insert("MCP_KILL_GRACE".into(), "2s".into());
        },
    )
    .await;
    let live = edge.running.backend().live_children().unwrap();
    let edge = std::sync::Arc::new(edge);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let edge = edge.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let client = edge.mcp(ALICE_KEY).await;
                let r = client
                    .call_tool(
                        CallToolRequestParams::new("echo")
                            .with_arguments(args(json!({"text": format!("{worker}-{i}")}))),
                    )
                    .await
                    .unwrap();
                assert_eq!(text_of(&r), format!("echo: {worker}-{i}"));
                client.cancel().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The start-up probe's pooled connection may stay; every session's child is gone,
    // and so are the grandchildren they started (same process group).
    assert!(
        eventually(Duration::from_secs(30), async || {
            live.load(std::sync::atomic::Ordering::Relaxed) <= 1
        })
        .await,
        "children still live: {}",
        live.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        eventually(Duration::from_secs(10), async || {
            processes_with_marker(&m).len() <= 2 // probe child + its grandchild
        })
        .await,
        "left behind: {:?}",
        processes_with_marker(&m)
    );
    let edge = std::sync::Arc::into_inner(edge).unwrap();
    edge.running.shutdown().await;
    assert!(
        eventually(Duration::from_secs(10), async || processes_with_marker(&m)
            .is_empty())
        .await,
        "left behind after shutdown: {:?}",
        processes_with_marker(&m)
    );
}

#[tokio::test]
async fn a_child_killed_mid_call_fails_that_call_and_the_next_session_works() {
    let m = marker();
    let (edge, _dir) = edge_with_config(&py_backend("tiny", "tiny_server.py", &m, ""), |env| {
        env.insert("MCP_RESTART_BACKOFF_MAX".into(), "200ms".into());
    })
    .await;
    let client = edge.mcp(ALICE_KEY).await;
    let r = client
        .call_tool(CallToolRequestParams::new("pid"))
        .await
        .unwrap();
    let info: Value = serde_json::from_str(&text_of(&r)).unwrap();
    let pid = info["pid"].as_i64().unwrap() as i32;
    // Its own process group.
    assert_eq!(info["pgid"], info["pid"]);

    let peer = client.peer().clone();
    let hung =
        tokio::spawn(async move { peer.call_tool(CallToolRequestParams::new("hang")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), hung)
        .await
        .expect("the call ends")
        .unwrap()
        .expect_err("a JSON-RPC error");
    let text = err.to_string();
    assert!(text.contains("went away"), "{text}");

    // The same session gets a new child after the backoff.
    assert!(
        eventually(Duration::from_secs(5), async || {
            client
                .call_tool(
                    CallToolRequestParams::new("echo")
                        .with_arguments(args(json!({"text": "again"}))),
                )
                .await
                .is_ok_and(|r| text_of(&r) == "echo: again")
        })
        .await
    );
    // And a new session works.
    let other = edge.mcp(BOB_KEY).await;
    let r = other
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "x"}))))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "echo: x");

    // A crash inside the call is the same.
    let err = client
        .call_tool(CallToolRequestParams::new("crash"))
        .await
        .expect_err("crash gives an error");
    assert!(err.to_string().contains("went away"), "{err}");

    // So is garbage on stdout: the child is stopped, the call fails at once.
    assert!(
        eventually(Duration::from_secs(5), async || {
            client
                .call_tool(CallToolRequestParams::new("pid"))
                .await
                .is_ok()
        })
        .await
    );
    let started = std::time::Instant::now();
    let err = client
        .call_tool(CallToolRequestParams::new("garbage"))
        .await
        .expect_err("garbage gives an error");
    assert!(err.to_string().contains("went away"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(5), async || {
            client
                .call_tool(
                    CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "ok"}))),
                )
                .await
                .is_ok_and(|r| text_of(&r) == "echo: ok")
        })
        .await
    );
    drop(other);
    client.cancel().await.unwrap();
    edge.running.shutdown().await;
    assert!(processes_with_marker(&m).is_empty());
}

#[tokio::test]
async fn per_call_timeout_and_env_allowlist() {
    python_sdk_installed();
    let m = marker();
    let (edge, _dir) = edge_with_config(
        &py_backend("py", "stdio_server.py", &m, ", GREETING = \"hello\""),
        |env| {
            env.insert("MCP_CALL_TIMEOUT".into(), "1s".into());
        },
    )
    .await;
    let client = edge.mcp(ALICE_KEY).await;
    let started = std::time::Instant::now();
    let err = client
        .call_tool(CallToolRequestParams::new("hang"))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("proxy.call_timeout"), "{err}");

    // A stateless call past the timeout is cancelled in the child too (its upstream
    // call is polled by the request itself until then).
    let flag = edge.fx.dir.path().join("stateless-cancelled");
    let started = std::time::Instant::now();
    let text = edge
        .stateless_text(
            ALICE_KEY,
            "wait_for_cancel",
            json!({"path": flag.display().to_string()}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text.contains("proxy.call_timeout"), "{text}");
    assert!(
        eventually(Duration::from_secs(10), async || {
            std::fs::read_to_string(&flag).is_ok_and(|t| t == "cancelled")
        })
        .await,
        "the child never saw the stateless call cancelled"
    );

    let r = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let who: Value = r
        .structured_content
        .clone()
        .unwrap_or_else(|| serde_json::from_str(&text_of(&r)).unwrap());
    let who = who.get("result").cloned().unwrap_or(who);
    assert_eq!(who["greeting"], "hello", "{who}");
    // The edge's own settings (secret file paths) are not passed to children.
    assert_eq!(who["api_keys_file"], Value::Null, "{who}");
    assert_eq!(who["pgid"], who["pid"], "{who}");
    client.cancel().await.unwrap();
    edge.running.shutdown().await;
}

#[tokio::test]
async fn several_backends_are_namespaced() {
    python_sdk_installed();
    let m = marker();
    let toml = format!(
        "[[backends]]\nname = \"docs\"\nkind = \"docs\"\n\n{}",
        py_backend("py", "stdio_server.py", &m, "")
    );
    let (edge, _dir) = edge_with_config(&toml, |_| {}).await;
    let seen = run_python_client(
        &edge,
        &edge.url(),
        &[],
        &[("MCP_EDGE_PREFIX", "py__"), ("MCP_EDGE_URI_PREFIX", "py+")],
    )
    .await;
    check_python_server_run(&seen, "py__", "py+");
    assert!(
        seen["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("docs__search_docs")),
        "{seen}"
    );
    // The docs backend answers under its own prefix.
    let client = edge.mcp(ALICE_KEY).await;
    let r = client
        .call_tool(
            CallToolRequestParams::new("docs__search_docs")
                .with_arguments(args(json!({"query": "rustls"}))),
        )
        .await
        .unwrap();
    assert!(text_of(&r).contains("guide/tls.md"), "{}", text_of(&r));
    let r = client
        .read_resource(ReadResourceRequestParams::new("docs+docs:///guide/tls.md"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&r.contents[0]).unwrap()["uri"],
        "docs+docs:///guide/tls.md"
    );
    let err = client
        .call_tool(CallToolRequestParams::new("echo"))
        .await
        .expect_err("un-namespaced names are unknown");
    assert!(err.to_string().contains("unknown tool"), "{err}");
    client.cancel().await.unwrap();
    edge.running.shutdown().await;
}

#[tokio::test]
async fn stateless_requests_of_a_shared_backend_use_the_bounded_pool() {
    let m = marker();
    let toml = py_backend("tiny", "tiny_server.py", &m, "") + "share = \"all\"\n";
    let (edge, _dir) = edge_with_config(&toml, |env| {
        env.insert("MCP_POOL_SIZE".into(), "2".into());
    })
    .await;
    let live = edge.running.backend().live_children().unwrap();
    // 2026-07-28 stateless clients of a `share = "all"` backend: no session, so their
    // calls share the pool.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let transport = StreamableHttpClientTransport::with_client(
            edge.http(),
            StreamableHttpClientTransportConfig::with_uri(edge.url()).auth_header(ALICE_KEY),
        );
        clients.push(
            ClientConfig::default()
                .serve_with_lifecycle(
                    transport,
                    ClientLifecycleMode::Discover {
                        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                    },
                )
                .await
                .expect("stateless client connects"),
        );
    }
    for i in 0..9 {
        let r = clients[i % 3]
            .call_tool(
                CallToolRequestParams::new("echo")
                    .with_arguments(args(json!({"text": format!("s{i}")}))),
            )
            .await
            .unwrap();
        assert_eq!(text_of(&r), format!("echo: s{i}"));
    }
    assert_eq!(edge.running.state().sessions.len(), 0);
    assert!(live.load(std::sync::atomic::Ordering::Relaxed) <= 2);
    edge.running.shutdown().await;
    assert!(processes_with_marker(&m).is_empty());
}

#[tokio::test]
async fn upstream_http_backend_uses_its_own_credential() {
    // The upstream: a second edge serving the docs tools, accepting only its own key.
    let upstream_key = "upstream-only-key-0123456789";
    let keys_dir = tempfile::tempdir().unwrap();
    let upstream_keys = keys_dir.path().join("keys");
    std::fs::write(&upstream_keys, format!("edge-front {upstream_key}\n")).unwrap();
    let keys_path = upstream_keys.display().to_string();
    let upstream = Edge::start_with(move |env| {
        env.insert("MCP_API_KEYS_FILE".into(), keys_path);
    })
    .await;
    let credential = keys_dir.path().join("upstream_token");
    std::fs::write(&credential, format!("{upstream_key}\n")).unwrap();
    let toml = format!(
        "[[backends]]\nname = \"remote\"\nkind = \"http\"\nurl = \"{}\"\ncredential_file = \"{}\"\nca_file = \"{}\"\nconnect_timeout = \"5s\"\n",
        upstream.url(),
        credential.display(),
        upstream.fx.ca_path.display()
    );
    let (edge, _dir) = edge_with_config(&toml, |_| {}).await;
    // The client's key (alice) is the front edge's; the upstream would refuse it.
    let client = edge.mcp(ALICE_KEY).await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"search_docs".to_string()), "{names:?}");
    let r = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(args(json!({"query": "rustls"}))),
        )
        .await
        .unwrap();
    assert!(text_of(&r).contains("guide/tls.md"), "{}", text_of(&r));
    let direct = upstream.initialize(ALICE_KEY).await;
    assert_eq!(direct.status(), 401, "alice's key is not valid upstream");
    client.cancel().await.unwrap();
    edge.running.shutdown().await;
    upstream.running.shutdown().await;
}

#[tokio::test]
async fn a_broken_backend_is_a_clear_error_not_a_panic() {
    let (edge, _dir) = edge_with_config(
        "[[backends]]\nname = \"broken\"\ncommand = [\"/nonexistent/mcp-server\"]\n",
        |env| {
            env.insert("MCP_RESTART_BACKOFF_MAX".into(), "100ms".into());
        },
    )
    .await;
    let r = edge.initialize(ALICE_KEY).await;
    let body = r.text().await.unwrap();
    let msgs = messages(&body);
    let error = &msgs.last().unwrap()["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("cannot start \"/nonexistent/mcp-server\""),
        "{body}"
    );
    // The edge itself stays up.
    let health = edge
        .http()
        .get(format!("{}/health", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// The real binary with a backend; returns it and its port (read from the JSON log).
async fn spawn_edge_binary(
    fx: &Fixture,
    program: &[&str],
    config: &std::path::Path,
) -> (tokio::process::Child, u16) {
    spawn_edge_binary_logged(fx, program, config, None).await
}

async fn spawn_edge_binary_logged(
    fx: &Fixture,
    program: &[&str],
    config: &std::path::Path,
    log: Option<std::sync::Arc<std::sync::Mutex<Vec<Value>>>>,
) -> (tokio::process::Child, u16) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = match program.split_first() {
        Some((wrapper, args)) => {
            let mut c = tokio::process::Command::new(wrapper);
            c.args(args).arg(bin());
            c
        }
        None => tokio::process::Command::new(bin()),
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(fx.env())
        .env("MCP_EDGE_CONFIG", config)
        .env("MCP_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
            {
                let addr: std::net::SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
                return addr.port();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server starts");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let (Some(log), Ok(v)) = (&log, serde_json::from_str::<Value>(&line)) {
                log.lock().unwrap().push(v);
            }
        }
    });
    (child, port)
}

async fn open_session(fx: &Fixture, port: u16) -> String {
    let http = client_trusting(&fx.ca_pem);
    let init = http
        .post(format!("https://localhost:{port}/mcp"))
        .bearer_auth(ALICE_KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    sid
}

fn sigterm(child: &tokio::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[tokio::test]
async fn sigterm_stops_and_reaps_every_child() {
    let fx = Fixture::new();
    let m = marker();
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(
        &config,
        py_backend(
            "tiny",
            "tiny_server.py",
            &m,
            ", TINY_SPAWN_GRANDCHILD = \"1\"",
        ),
    )
    .unwrap();
    let (mut edge, port) = spawn_edge_binary(&fx, &[], &config).await;
    for _ in 0..3 {
        open_session(&fx, port).await;
    }
    assert!(
        processes_with_marker(&m).len() >= 6,
        "{:?}",
        processes_with_marker(&m)
    );
    sigterm(&edge);
    let status = tokio::time::timeout(Duration::from_secs(20), edge.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        processes_with_marker(&m).is_empty(),
        "left behind: {:?}",
        processes_with_marker(&m)
    );
}

/// Zombies whose parent is `ppid`.
fn zombies_of(ppid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let parent: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" && parent == ppid {
            found.push(pid);
        }
    }
    found
}

fn children_of(ppid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let parent: i32 = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if parent == ppid {
                found.push(pid);
            }
        }
    }
    found
}

/// As PID 1 (here: in a new PID namespace via `unshare`), the edge reaps orphans that
/// are re-parented to it, so none stays a zombie.
#[tokio::test]
async fn as_pid_1_the_edge_reaps_reparented_orphans() {
    let can_unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !can_unshare {
        eprintln!("skipped: cannot create a PID namespace here (needs root or user namespaces)");
        return;
    }
    let fx = Fixture::new();
    let m = marker();
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(
        &config,
        py_backend("tiny", "tiny_server.py", &m, ", TINY_SPAWN_ORPHAN = \"1\""),
    )
    .unwrap();
    let (mut unshare, port) = spawn_edge_binary(
        &fx,
        &["unshare", "--pid", "--fork", "--kill-child"],
        &config,
    )
    .await;
    let edge_pid = children_of(unshare.id().unwrap() as i32)[0];
    // Each session's child leaves one orphan behind.
    for _ in 0..3 {
        open_session(&fx, port).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        eventually(Duration::from_secs(5), async || zombies_of(edge_pid)
            .is_empty())
        .await,
        "zombies under the edge (PID 1): {:?}",
        zombies_of(edge_pid)
    );
    // A graceful stop of the edge (PID 1 in there) stops its children.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(edge_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), unshare.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        eventually(Duration::from_secs(5), async || processes_with_marker(&m)
            .is_empty())
        .await,
        "left behind: {:?}",
        processes_with_marker(&m)
    );
}

#[tokio::test]
async fn child_stderr_is_logged_with_its_session_and_cancel_reaches_the_child() {
    python_sdk_installed();
    let fx = Fixture::new();
    let m = marker();
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(&config, py_backend("py", "stdio_server.py", &m, "")).unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut edge, port) = spawn_edge_binary_logged(&fx, &[], &config, Some(log.clone())).await;
    let transport = StreamableHttpClientTransport::with_client(
        client_trusting(&fx.ca_pem),
        StreamableHttpClientTransportConfig::with_uri(format!("https://localhost:{port}/mcp"))
            .auth_header(ALICE_KEY),
    );
    let client = rmcp::ServiceExt::serve((), transport).await.unwrap();

    // A client cancel reaches the tool running in the child.
    let flag = fx.dir.path().join("cancelled");
    let handle = client
        .peer()
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
                CallToolRequestParams::new("wait_for_cancel")
                    .with_arguments(args(json!({"path": flag.display().to_string()}))),
            )),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.cancel(Some("test cancels".into())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || {
            std::fs::read_to_string(&flag).is_ok_and(|t| t == "cancelled")
        })
        .await,
        "the child never saw the cancellation"
    );

    // Its stderr lands in the log, tagged with backend, principal and session id.
    let _ = client.call_tool(CallToolRequestParams::new("crash")).await;
    let found = eventually(Duration::from_secs(10), async || {
        log.lock().unwrap().iter().any(|v| {
            v["target"] == "mcp_edge::child"
                && v["message"] == "crashing on purpose"
                && v["backend"] == "py"
                && v["session"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("alice ") && s.len() > 20)
        })
    })
    .await;
    assert!(
        found,
        "{:#?}",
        log.lock()
            .unwrap()
            .iter()
            .filter(|v| v["target"] == "mcp_edge::child")
            .collect::<Vec<_>>()
    );
    client.cancel().await.unwrap();
    sigterm(&edge);
    let _ = tokio::time::timeout(Duration::from_secs(20), edge.wait()).await;
    assert!(processes_with_marker(&m).is_empty());
}

#[tokio::test]
async fn child_cap_spawn_timeout_and_pool_idle_reaping() {
    // Cap: the start-up probe keeps one pooled child (`share = "all"`); one session
    // fits, the next does not.
    let m = marker();
    let toml = py_backend("tiny", "tiny_server.py", &m, "") + "share = \"all\"\n";
    let (edge, _dir) = edge_with_config(&toml, |env| {
        env.insert("MCP_MAX_CHILDREN".into(), "2".into());
        // Long enough that the probe's pooled child is still there when bob comes,
        // even on a loaded machine (500 ms was not).
        env.insert("MCP_POOL_IDLE_TIMEOUT".into(), "4s".into());
    })
    .await;
    let live = edge.running.backend().live_children().unwrap();
    let first = edge.mcp(ALICE_KEY).await;
    let r = edge.initialize(BOB_KEY).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("proxy.max_children"), "{body}");
    first.cancel().await.unwrap();
    // The idle pooled child is closed too.
    assert!(
        eventually(Duration::from_secs(20), async || {
            live.load(std::sync::atomic::Ordering::Relaxed) == 0
        })
        .await,
        "live: {}",
        live.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        eventually(Duration::from_secs(5), async || processes_with_marker(&m)
            .is_empty())
        .await
    );
    edge.running.shutdown().await;

    // Spawn timeout: a process that never speaks MCP is stopped and reported.
    let m = marker();
    let toml = format!(
        "[[backends]]\nname = \"mute\"\ncommand = [\"sleep\", \"300\"]\nenv = {{ EDGE_TEST_MARKER = \"{m}\" }}\n"
    );
    let (edge, _dir) = edge_with_config(&toml, |env| {
        env.insert("MCP_SPAWN_TIMEOUT".into(), "500ms".into());
    })
    .await;
    let r = edge.initialize(ALICE_KEY).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("proxy.spawn_timeout"), "{body}");
    assert!(
        eventually(Duration::from_secs(10), async || processes_with_marker(&m)
            .is_empty())
        .await,
        "left behind: {:?}",
        processes_with_marker(&m)
    );
    edge.running.shutdown().await;
}

#[tokio::test]
async fn the_upstream_credential_never_reaches_the_log() {
    let upstream_key = "upstream-secret-token-9876543210";
    let keys_dir = tempfile::tempdir().unwrap();
    let upstream_keys = keys_dir.path().join("keys");
    std::fs::write(&upstream_keys, format!("edge-front {upstream_key}\n")).unwrap();
    let keys_path = upstream_keys.display().to_string();
    let upstream = Edge::start_with(move |env| {
        env.insert("MCP_API_KEYS_FILE".into(), keys_path);
    })
    .await;
    let fx = Fixture::new();
    let credential = fx.dir.path().join("upstream_token");
    std::fs::write(&credential, upstream_key).unwrap();
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\nlevel = \"trace\"\n[[backends]]\nname = \"remote\"\nurl = \"{}\"\ncredential_file = \"{}\"\nca_file = \"{}\"\n",
            upstream.url(),
            credential.display(),
            upstream.fx.ca_path.display()
        ),
    )
    .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut edge, port) = spawn_edge_binary_logged(&fx, &[], &config, Some(log.clone())).await;
    let transport = StreamableHttpClientTransport::with_client(
        client_trusting(&fx.ca_pem),
        StreamableHttpClientTransportConfig::with_uri(format!("https://localhost:{port}/mcp"))
            .auth_header(ALICE_KEY),
    );
    let client = rmcp::ServiceExt::serve((), transport).await.unwrap();
    let r = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(args(json!({"query": "rustls"}))),
        )
        .await
        .unwrap();
    assert!(text_of(&r).contains("guide/tls.md"));
    client.cancel().await.unwrap();
    sigterm(&edge);
    let _ = tokio::time::timeout(Duration::from_secs(20), edge.wait()).await;
    let lines = log.lock().unwrap().clone();
    assert!(lines.len() > 20, "trace logging is on");
    for line in lines.iter() {
        let text = line.to_string();
        assert!(!text.contains(upstream_key), "credential logged: {text}");
        assert!(!text.contains(ALICE_KEY), "client key logged: {text}");
    }
    upstream.running.shutdown().await;
}

#[test]
fn check_config_reports_backend_problems() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[tls]\nmode = \"off\"\n[auth]\nmode = \"none\"\n[server]\nhost = \"127.0.0.1\"\n\
         [[backends]]\nname = \"a\"\ncommand = [\"/nonexistent/server\"]\nenv = { TOKEN = \"hidden-value-123\" }\n\
         [[backends]]\nname = \"b\"\nurl = \"https://x.example/mcp\"\ncredential_file = \"/nonexistent/token\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("backends[0].command (a)"), "{stderr}");
    assert!(
        stderr.contains("backends[1].credential_file (b)"),
        "{stderr}"
    );
    assert!(!stdout.contains("hidden-value-123"), "{stdout}");
    assert!(stdout.contains("TOKEN"), "{stdout}");
}

/// A long call through the proxy: the client's SSE stream carries keep-alive comments
/// while the backend works (idle proxies and load balancers cut quiet connections).
#[tokio::test]
async fn long_calls_get_sse_keep_alives() {
    let m = marker();
    let (edge, _dir) =
        edge_with_config(&py_backend("tiny", "tiny_server.py", &m, ""), |_| {}).await;
    let init = edge.initialize(ALICE_KEY).await;
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let with_session = |rb: reqwest::RequestBuilder| {
        rb.header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-06-18")
    };
    let r = with_session(edge.post(Some(ALICE_KEY)))
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut r = with_session(edge.post(Some(ALICE_KEY)))
        .timeout(Duration::from_secs(60))
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"seconds":17}}}))
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
        if body.contains("slow done") {
            break;
        }
    }
    let result_at = body.find("slow done").expect("the result arrives");
    let comments = body[..result_at]
        .lines()
        .filter(|l| l.starts_with(':'))
        .count();
    assert!(comments >= 1, "no keep-alive before the result:\n{body}");
    edge.running.shutdown().await;
}

/// `MCP_TRANSPORT=stdio` fronts backends too (one local client = one session).
#[tokio::test]
async fn stdio_transport_fronts_a_backend() {
    let dir = tempfile::tempdir().unwrap();
    let m = marker();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntransport = \"stdio\"\n{}",
            py_backend("tiny", "tiny_server.py", &m, "")
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MCP_EDGE_CONFIG", &config);
    let client = rmcp::ServiceExt::serve((), rmcp::transport::TokioChildProcess::new(cmd).unwrap())
        .await
        .expect("stdio handshake");
    let r = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "via stdio"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "echo: via stdio");
    client.cancel().await.unwrap();
    assert!(
        eventually(Duration::from_secs(15), async || processes_with_marker(&m)
            .is_empty())
        .await,
        "left behind: {:?}",
        processes_with_marker(&m)
    );
}

/// Per-tool access rules (API keys' `tools=`) apply to the namespaced names.
#[tokio::test]
async fn tool_access_rules_see_namespaced_names() {
    let m = marker();
    let toml = format!(
        "[[backends]]\nname = \"docs\"\nkind = \"docs\"\n\n{}",
        py_backend("tiny", "tiny_server.py", &m, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        format!("alice {ALICE_KEY} tools=tiny__echo,docs__*\nbob {BOB_KEY}\n"),
    )
    .unwrap();
    let keys_path = keys.display().to_string();
    let (edge, _dir) = edge_with_config(&toml, move |env| {
        env.insert("MCP_API_KEYS_FILE".into(), keys_path);
    })
    .await;
    let alice = edge.mcp(ALICE_KEY).await;
    let mut names: Vec<String> = alice
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["docs__read_doc", "docs__search_docs", "tiny__echo"],
        "{names:?}"
    );
    let r = alice
        .call_tool(
            CallToolRequestParams::new("tiny__echo").with_arguments(args(json!({"text": "ok"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "echo: ok");
    let err = alice
        .call_tool(CallToolRequestParams::new("tiny__pid"))
        .await
        .expect_err("not allowed");
    assert!(err.to_string().contains("-32003"), "{err}");
    let bob = edge.mcp(BOB_KEY).await;
    let all = bob.list_all_tools().await.unwrap();
    assert!(all.iter().any(|t| t.name == "tiny__pid"));
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
    edge.running.shutdown().await;
}
