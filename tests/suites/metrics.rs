//! `/metrics`: counters move with traffic, failures, rate limiting and reloads.

use std::time::Duration;

use mcp_edge::metrics::sample;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::common::*;

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

async fn scrape(url: &str) -> String {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_with_traffic_failures_limits_and_reloads() {
    let edge = Edge::start().await;
    let admin = edge
        .running
        .admin_addr()
        .expect("admin listener by default");
    assert!(admin.ip().is_loopback());
    let url = format!("http://{admin}/metrics");
    let before = scrape(&url).await;

    // Traffic: a session with a successful call, a tool error and an unknown tool.
    let client = edge.mcp(ALICE_KEY).await;
    client
        .call_tool(
            CallToolRequestParams::new("search_docs").with_arguments(args(json!({"query": "tls"}))),
        )
        .await
        .unwrap();
    let escape = client
        .call_tool(
            CallToolRequestParams::new("read_doc")
                .with_arguments(args(json!({"path": "../ca.pem"}))),
        )
        .await
        .unwrap();
    assert_eq!(escape.is_error, Some(true));
    assert!(
        client
            .call_tool(CallToolRequestParams::new("no_such_tool"))
            .await
            .is_err()
    );

    // Failures: no key, a wrong key.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        edge.post(None).json(&list).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        edge.post(Some(WRONG_KEY))
            .json(&list)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Rate limit: carol's burst is 3.
    let mut limited = 0;
    let session = edge.session(CAROL_KEY).await;
    for _ in 0..4 {
        if edge.list_tools(CAROL_KEY, &session).await.status() == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 1);
    // Reloads: rotate the keys file, then break it (the last good keys stay).
    let counts = edge.running.secrets().unwrap().counts("api_keys").unwrap();
    let keys = std::fs::read_to_string(&edge.fx.keys_path).unwrap();
    std::fs::write(
        &edge.fx.keys_path,
        format!("{keys}dave dave-key-0123456789abcdef\n"),
    )
    .unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(5), async || {
            counts.ok.load(std::sync::atomic::Ordering::Relaxed) >= 1
        })
        .await
    );
    std::fs::write(&edge.fx.keys_path, "garbage\n").unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(5), async || {
            counts.failed.load(std::sync::atomic::Ordering::Relaxed) >= 1
        })
        .await
    );

    let after = scrape(&url).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(
        moved(
            "mcp_edge_http_requests_total",
            &[("route", "/mcp"), ("status", "401")]
        ) >= 2.0,
        "{after}"
    );
    assert!(
        moved(
            "mcp_edge_http_requests_total",
            &[("route", "/mcp"), ("status", "200")]
        ) >= 4.0
    );
    assert!(moved("mcp_edge_auth_failures_total", &[("reason", "missing")]) >= 1.0);
    assert!(moved("mcp_edge_auth_failures_total", &[("reason", "invalid_key")]) >= 1.0);
    assert!(
        moved(
            "mcp_edge_rate_limited_requests_total",
            &[("limit", "principal")]
        ) >= 1.0
    );
    for (tool, outcome) in [
        ("search_docs", "ok"),
        ("read_doc", "tool_error"),
        ("no_such_tool", "rpc_error"),
    ] {
        assert!(
            moved(
                "mcp_edge_tool_call_duration_seconds_count",
                &[("tool", tool), ("outcome", outcome)]
            ) >= 1.0,
            "{tool}/{outcome}: {after}"
        );
    }
    assert!(
        moved(
            "mcp_edge_secret_reloads_total",
            &[("kind", "api_keys"), ("result", "ok")]
        ) >= 1.0
    );
    assert!(
        moved(
            "mcp_edge_secret_reloads_total",
            &[("kind", "api_keys"), ("result", "failed")]
        ) >= 1.0
    );
    // This server's own sessions: alice's, and carol's three.
    assert!(
        value(&after, "mcp_edge_live_sessions", &[]) >= 1.0,
        "{after}"
    );
    // Backend children (none behind this edge; other tests in this process may run some).
    assert!(
        sample(&after, "mcp_edge_child_processes", &[]).is_some(),
        "{after}"
    );
    let expiry = value(
        &after,
        "mcp_edge_certificate_expiry_timestamp_seconds",
        &[("source", "files")],
    );
    assert!(expiry > mcp_edge::certs::now_unix() as f64, "{after}");
    // Client-chosen paths do not become label values.
    edge.http()
        .get(format!("{}/no/such/path/123", edge.base()))
        .send()
        .await
        .unwrap();
    let last = scrape(&url).await;
    assert!(!last.contains("/no/such/path"));
    assert!(
        sample(
            &last,
            "mcp_edge_http_requests_total",
            &[("route", "other"), ("status", "404")]
        )
        .is_some()
    );

    // The admin listener also answers readiness, naming the certificate expiry.
    let ready: serde_json::Value = reqwest::get(format!("http://{admin}/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(ready["certificate"]["expires_in_seconds"].as_i64().unwrap() > 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn metrics_on_the_main_port_need_a_key() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_METRICS_MODE".into(), "main".into());
    })
    .await;
    assert_eq!(edge.running.admin_addr(), None);
    let url = format!("{}/metrics", edge.base());
    let anonymous = edge.http().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let ok = edge
        .http()
        .get(&url)
        .bearer_auth(BOB_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(
        text.contains("# TYPE mcp_edge_http_requests counter"),
        "{text}"
    );
    assert!(text.contains("mcp_edge_auth_failures_total{reason=\"missing\"}"));

    // /ready on the main port carries the certificate's expiry too.
    let ready: serde_json::Value = edge
        .http()
        .get(format!("{}/ready", edge.base()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ready["certificate"]["not_after_unix"].as_i64().is_some(),
        "{ready}"
    );
}

#[tokio::test]
async fn a_taken_admin_port_is_a_clear_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let fx = Fixture::new();
    let mut env = fx.env();
    env.insert("MCP_METRICS_LISTEN".into(), addr.to_string());
    let err = match mcp_edge::app::start(load(&env)).await {
        Ok(_) => panic!("started although {addr} is taken"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}
