//! The audit trail: one JSON record per tool call, resource read and prompt get,
//! refused ones included, arguments hashed, a crashed backend's call recorded.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use super::backends::edge_with_config;
use crate::common::*;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

async fn wait_for(path: &Path, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(10), async || records(path).len() >= n).await;
    records(path)
}

fn call(id: u64, name: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{arguments}}}}}"#
    )
}

#[tokio::test]
async fn every_call_gets_one_record_refused_and_crashed_ones_too() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_text = audit.display().to_string();
    let upstream = format!(
        "{}/tests/python/traced_upstream.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let toml = format!(
        "[[backends]]\nname = \"docs\"\nkind = \"docs\"\n\n[[backends]]\nname = \"py\"\ncommand = [\"python3\", \"{upstream}\", \"--stdio\"]\n"
    );
    let (edge, _config) = edge_with_config(&toml, move |env| {
        env.insert("MCP_AUDIT_OUTPUT".into(), "file".into());
        env.insert("MCP_AUDIT_FILE".into(), audit_text);
    })
    .await;
    let session = edge.session(ALICE_KEY).await;
    let post = |body: String, key: &'static str| {
        edge.post(Some(key))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body)
            .send()
    };

    // 1. A good call: every field, the arguments only as their SHA-256.
    let args = r#"{"query":"rustls  certificates"}"#;
    let r = post(call(2, "docs__search_docs", args), ALICE_KEY)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    let got = wait_for(&audit, 1).await;
    let ok = &got[0];
    assert_eq!(ok["method"], "tools/call");
    assert_eq!(ok["name"], "docs__search_docs");
    assert_eq!(ok["backend"], "docs");
    assert_eq!(ok["principal"], "alice");
    assert!(
        ok["credential"].as_str().is_some_and(|c| !c.is_empty()),
        "{ok}"
    );
    // The session's own id (as in the access log), not the sealed one clients hold.
    assert!(
        ok["session"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && !s.contains(&session))
    );
    assert_eq!(ok["session_kind"], "session");
    assert_eq!(ok["client"], "127.0.0.1");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["status"], 200);
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["request_bytes"].as_u64().unwrap() > 50);
    assert!(ok["response_bytes"].as_u64().unwrap() > 50);
    assert_eq!(
        ok["arguments_sha256"],
        hex::encode(sha2::Sha256::digest(args.as_bytes()))
    );
    assert!(
        ok["arguments"].is_null(),
        "arguments are not logged by default"
    );
    assert!(ok["request_id"].as_str().is_some_and(|id| id.len() >= 16));
    assert!(
        ok["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ok}"
    );

    // 2. A bad key: refused before the body is read, known by its 2026 headers.
    let r = edge
        .post(Some("not-a-key-0000000000000000"))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "docs__search_docs")
        .body(call(3, "docs__search_docs", args))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // 3. An unknown tool (a JSON-RPC error), a crashing backend, a resource read
    //    and a prompt get.
    for body in [
        call(4, "docs__no_such_tool", "{}"),
        call(5, "py__crash", "{}"),
        r#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"docs+docs://nothing-here"}}"#.into(),
        r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"py__nothing"}}"#.into(),
    ] {
        let r = post(body, ALICE_KEY).await.unwrap();
        let _ = r.text().await;
    }
    // 4. Over the rate limit (carol: burst 3).
    let carol = edge.session(CAROL_KEY).await;
    let mut limited = 0;
    for id in 10..16 {
        let r = edge
            .post(Some(CAROL_KEY))
            .header("mcp-session-id", &carol)
            .header("mcp-protocol-version", "2025-06-18")
            .body(call(id, "docs__search_docs", "{}"))
            .send()
            .await
            .unwrap();
        limited += usize::from(r.status() == 429);
        let _ = r.text().await;
    }
    assert!(limited > 0);

    let got = wait_for(&audit, 6 + 6).await;
    let find = |f: &dyn Fn(&Value) -> bool| got.iter().find(|r| f(r)).cloned();
    let refused = find(&|r| r["status"] == 401).expect("the 401 is audited");
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["reason"], "invalid_key");
    assert_eq!(refused["name"], "docs__search_docs");
    assert!(refused["principal"].is_null());
    let unknown = find(&|r| r["name"] == "docs__no_such_tool").unwrap();
    assert_eq!(unknown["outcome"], "rpc_error");
    assert_eq!(unknown["error_code"], -32602);
    let crashed = find(&|r| r["name"] == "py__crash").expect("the crashed call is audited");
    assert_eq!(crashed["backend"], "py");
    assert!(
        ["rpc_error", "aborted"].contains(&crashed["outcome"].as_str().unwrap()),
        "{crashed}"
    );
    let read = find(&|r| r["method"] == "resources/read").unwrap();
    assert_eq!(read["name"], "docs+docs://nothing-here");
    assert_eq!(read["backend"], "docs");
    assert!(find(&|r| r["method"] == "prompts/get").is_some());
    let over = find(&|r| r["status"] == 429).expect("the 429 is audited");
    assert_eq!(over["principal"], "carol");
    assert_eq!(over["reason"], "rate_limited");
    assert_eq!(over["outcome"], "refused");
    // One record per call: no protocol traffic (initialize, notifications, lists).
    assert!(got.iter().all(|r| r["method"] != "initialize"));
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !text.contains(ALICE_KEY) && !text.contains("not-a-key"),
        "{text}"
    );
    assert!(
        !text.contains("rustls  certificates"),
        "arguments never in clear"
    );
    edge.running.shutdown().await;
}

#[tokio::test]
async fn arguments_are_logged_only_when_asked_and_the_file_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_text = audit.display().to_string();
    let edge = Edge::start_with(move |env| {
        env.insert("MCP_AUDIT_FILE".into(), audit_text);
        env.remove("MCP_AUDIT_OUTPUT");
        env.insert("MCP_AUDIT_LOG_ARGUMENTS".into(), "true".into());
        env.insert("MCP_AUDIT_MAX_FILE_BYTES".into(), "4096".into());
        env.insert("MCP_AUDIT_MAX_FILES".into(), "2".into());
    })
    .await;
    let session = edge.session(ALICE_KEY).await;
    for id in 0..12 {
        let r = edge
            .rpc(
                ALICE_KEY,
                &session,
                &json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                        "params":{"name":"search_docs","arguments":{"query":"tls","n":id}}}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.text().await;
    }
    edge.running.shutdown().await;
    let old = |n: u32| Path::new(&format!("{}.{n}", audit.display())).to_path_buf();
    assert!(old(1).exists(), "rotated past 4096 bytes");
    assert!(!old(3).exists(), "two old files kept");
    let mut all = records(&old(2));
    all.extend(records(&old(1)));
    all.extend(records(&audit));
    assert_eq!(all.len(), 12, "whole lines, none lost");
    let last = all.last().unwrap();
    assert_eq!(last["arguments"], json!({"query":"tls","n":11}));
    assert_eq!(last["backend"], "docs");
}

#[tokio::test]
async fn stateless_calls_through_a_backend_are_recorded_as_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_text = audit.display().to_string();
    let server = format!(
        "{}/tests/python/stateful_server.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let toml = format!("[[backends]]\nname = \"state\"\ncommand = [\"python3\", \"{server}\"]\n");
    let (edge, _config) = edge_with_config(&toml, move |env| {
        env.insert("MCP_AUDIT_OUTPUT".into(), "file".into());
        env.insert("MCP_AUDIT_FILE".into(), audit_text);
    })
    .await;
    let h1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(edge.fx.ca_pem.as_bytes()).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let h2 = edge.http();
    // (tool, arguments, progress first → SSE, outcome)
    let cases = [
        ("recall", json!({}), false, "ok", "application/json"),
        ("fail", json!({}), false, "tool_error", "application/json"),
        ("nope", json!({}), false, "rpc_error", "application/json"),
        ("progress", json!({}), true, "ok", "text/event-stream"),
    ];
    let mut id = 0;
    let mut expected = Vec::new();
    for (version, client) in [("1.1", &h1), ("2", &h2)] {
        for (tool, arguments, progress, outcome, content_type) in &cases {
            id += 1;
            let body = stateless_call(id, tool, arguments.clone(), *progress);
            let r = edge
                .stateless(client, ALICE_KEY, &body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{tool} over HTTP/{version}");
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with(content_type), "{tool}: {ct}");
            let text = r.text().await.unwrap();
            assert!(
                messages(&text).iter().any(|m| m["id"] == id),
                "{tool}: {text}"
            );
            expected.push((id, *outcome, *tool, version));
        }
    }
    // A client that goes away mid-answer (progress came, the result has not).
    for client in [&h1, &h2] {
        id += 1;
        let body = stateless_call(id, "slow_stream", json!({"seconds": 2}), true);
        let mut r = edge
            .stateless(client, ALICE_KEY, &body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let first = r.chunk().await.unwrap().expect("the progress event");
        assert!(String::from_utf8_lossy(&first).contains("progress"));
        drop(r);
        expected.push((id, "aborted", "slow_stream", "-"));
    }
    let got = wait_for(&audit, expected.len()).await;
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (i, (_, outcome, tool, version)) in expected.iter().enumerate() {
        let record = &got[i];
        assert_eq!(record["name"], *tool, "{record}");
        assert_eq!(record["session_kind"], "stateless", "{record}");
        assert_eq!(
            record["outcome"], *outcome,
            "{tool} over HTTP/{version}: {record}"
        );
    }
    edge.running.shutdown().await;
}
