//! Traces over OTLP to a real receiver (tests/python/otlp_receiver.py decodes the
//! protobuf): the span tree of a call through an HTTP and a stdio backend, the
//! client's trace context as the root's parent (header or `_meta`), the context
//! passed on to both backends, refusals recorded, no secret in any span, gRPC too,
//! calls unaffected when the collector is gone, and no spans built while it is.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const META_TRACE: &str = "aaaabbbbccccddddeeeeffff00001111";
const META_SPAN: &str = "1122334455667788";
const COLLECTOR_TOKEN: &str = "collector-token-7f3a9c";

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Start a Python fixture and read its JSON ready line.
async fn start_python(args: &[&str]) -> (tokio::process::Child, Value) {
    let mut child = tokio::process::Command::new("python3")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("fixture starts")
        .unwrap()
        .expect("a ready line");
    (child, serde_json::from_str(&ready).unwrap())
}

/// The OTLP receiver writing the spans it decodes to `out`, listening on a free port
/// for `port_flag` (`--http-port` or `--grpc-port`).
async fn start_receiver(out: &Path, port_flag: &str) -> (tokio::process::Child, Value) {
    start_python(&[
        &script("otlp_receiver.py"),
        "--out",
        out.to_str().unwrap(),
        port_flag,
        "0",
    ])
    .await
}

fn spans(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn spans_until(path: &Path, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let found = eventually(Duration::from_secs(20), async || done(&spans(path))).await;
    let all = spans(path);
    assert!(found, "spans never arrived: {all:#?}");
    all
}

struct Client {
    http: reqwest::Client,
    url: String,
    session: String,
}

impl Client {
    async fn open(http: reqwest::Client, port: u16) -> Client {
        let url = format!("https://localhost:{port}/mcp");
        let mut c = Client {
            http,
            url,
            session: String::new(),
        };
        let r = c
            .post(
                json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-06-18","capabilities":{},
                "clientInfo":{"name":"otel-test","version":"1"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        c.session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.text().await;
        let r = c
            .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        c
    }

    fn post(&self, body: Value) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .post(&self.url)
            .bearer_auth(ALICE_KEY)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if !self.session.is_empty() {
            rb = rb.header("mcp-session-id", &self.session);
        }
        rb
    }

    /// `count` `tools/list` calls, each answered 200.
    async fn tools_list(&self, count: u64) {
        for id in 0..count {
            let r = self
                .post(json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.text().await;
        }
    }

    /// `tools/call`, and the `meta` tool's answer (the `_meta` the backend saw).
    async fn meta(&self, tool: &str, meta: Option<Value>, traceparent: Option<&str>) -> Value {
        let mut params = json!({"name": tool, "arguments": {}});
        if let Some(m) = meta {
            params["_meta"] = m;
        }
        let mut rb =
            self.post(json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":params}));
        if let Some(tp) = traceparent {
            rb = rb.header("traceparent", tp);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        let answer = messages(&body)
            .into_iter()
            .find(|m| m["id"] == 7)
            .unwrap_or_else(|| panic!("{body}"));
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        serde_json::from_str(text).unwrap()
    }
}

fn by_parent<'a>(all: &'a [Value], parent: &str, name: &str) -> Option<&'a Value> {
    all.iter()
        .find(|s| s["parent_span_id"] == parent && s["name"] == name)
}

fn parent_id(traceparent: &str) -> (&str, &str) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    (parts[1], parts[2])
}

/// The real interpreter (the spawned edge runs with a cleared environment, so a
/// `python3` shim on PATH would not be found or would not work).
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn edge_config(dir: &Path, upstream_port: u64) -> PathBuf {
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[[backends]]\nname = \"up\"\nurl = \"http://127.0.0.1:{upstream_port}/mcp\"\n\n\
             [[backends]]\nname = \"local\"\ncommand = [\"{}\", \"{}\", \"--stdio\"]\n",
            python(),
            script("traced_upstream.py")
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn calls_are_traced_end_to_end_and_never_slowed_by_the_collector() {
    let fx = Fixture::new();
    let dir = fx.dir.path().to_path_buf();
    let out = dir.join("spans.jsonl");
    let (mut receiver, ready) = start_receiver(&out, "--http-port").await;
    let http_port = ready["http_port"].as_u64().unwrap();
    let headers_out = dir.join("upstream-headers.jsonl");
    let (_upstream, up) = start_python(&[
        &script("traced_upstream.py"),
        "--http-port",
        "0",
        "--headers-out",
        headers_out.to_str().unwrap(),
    ])
    .await;
    let config = edge_config(&dir, up["port"].as_u64().unwrap());
    let token_file = dir.join("otel_headers");
    std::fs::write(
        &token_file,
        format!("authorization: Bearer {COLLECTOR_TOKEN}\n"),
    )
    .unwrap();
    let metrics_port = free_port();
    let (config_s, endpoint, token_s, metrics_s) = (
        config.display().to_string(),
        format!("http://127.0.0.1:{http_port}"),
        token_file.display().to_string(),
        format!("127.0.0.1:{metrics_port}"),
    );
    let (mut edge, port) = spawn_edge(
        &fx,
        &[
            ("MCP_EDGE_CONFIG", &config_s),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("MCP_OTEL_HEADERS_FILE", &token_s),
            ("OTEL_SERVICE_NAME", "edge-under-test"),
            ("MCP_METRICS_LISTEN", &metrics_s),
        ],
        None,
    )
    .await;
    let client = Client::open(client_trusting(&fx.ca_pem), port).await;

    // 1. The HTTP upstream, the client's context in the `traceparent` header.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let _ = client.meta("up__meta", None, Some(&tp)).await;
    // 2. The stdio backend, the client's context in `_meta` only.
    let meta_tp = format!("00-{META_TRACE}-{META_SPAN}-01");
    let seen_by_stdio = client
        .meta(
            "local__meta",
            Some(json!({"traceparent": meta_tp, "tracestate": "client=1"})),
            None,
        )
        .await;
    // 3. A refused call (a wrong key).
    let r = client
        .http
        .post(&client.url)
        .bearer_auth("wrong-key-00000000000000000")
        .header(
            "traceparent",
            format!("00-{}-{CLIENT_SPAN}-01", "c".repeat(32)),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let all = spans_until(&out, |all| {
        all.iter()
            .filter(|s| s["kind"] == "SPAN_KIND_CLIENT")
            .count()
            >= 2
            && all
                .iter()
                .any(|s| s["trace_id"] == "c".repeat(32) && s["name"] == "auth")
    })
    .await;

    // The header's context is the root's parent; auth, rate_limit, mcp under it;
    // the backend call under mcp.
    let root = by_parent(&all, CLIENT_SPAN, "POST /mcp")
        .filter(|s| s["trace_id"] == CLIENT_TRACE)
        .unwrap_or_else(|| panic!("no root under the client's span: {all:#?}"));
    assert_eq!(root["kind"], "SPAN_KIND_SERVER");
    assert_eq!(root["attributes"]["http.response.status_code"], 200);
    assert_eq!(root["attributes"]["mcp_edge.principal"], "alice");
    // The semantic conventions' form: "1.1" or "2", not "HTTP/1.1".
    let version = &root["attributes"]["network.protocol.version"];
    assert!(version == "1.1" || version == "2", "{version}");
    assert_eq!(root["resource"]["service.name"], "edge-under-test");
    let root_id = root["span_id"].as_str().unwrap();
    for step in ["auth", "rate_limit", "tools/call up__meta"] {
        assert!(
            by_parent(&all, root_id, step).is_some(),
            "{step} under the root: {all:#?}"
        );
    }
    let mcp = by_parent(&all, root_id, "tools/call up__meta").unwrap();
    assert_eq!(mcp["attributes"]["mcp.method.name"], "tools/call");
    assert_eq!(mcp["attributes"]["gen_ai.tool.name"], "up__meta");
    assert_eq!(mcp["attributes"]["mcp_edge.session.kind"], "session");
    let backend = by_parent(&all, mcp["span_id"].as_str().unwrap(), "tools/call up")
        .unwrap_or_else(|| panic!("backend span under mcp: {all:#?}"));
    assert_eq!(backend["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(backend["attributes"]["mcp_edge.backend"], "up");
    assert_eq!(backend["attributes"]["mcp_edge.backend.kind"], "http");
    // The HTTP upstream got a `traceparent` of the same trace, parented by that span.
    let upstream_calls: Vec<Value> = std::fs::read_to_string(&headers_out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["mcp_method"] == "tools/call")
        .collect();
    let sent = upstream_calls[0]["traceparent"]
        .as_str()
        .expect("traceparent header");
    assert_eq!(
        parent_id(sent),
        (CLIENT_TRACE, backend["span_id"].as_str().unwrap())
    );

    // `_meta`'s context is the root's parent when there is no header; the stdio
    // backend gets the edge's context in its `_meta`.
    let root2 = all
        .iter()
        .find(|s| s["trace_id"] == META_TRACE && s["name"] == "POST /mcp")
        .unwrap_or_else(|| panic!("no root in the _meta trace: {all:#?}"));
    assert_eq!(root2["parent_span_id"], META_SPAN);
    let root2_id = root2["span_id"].as_str().unwrap();
    assert!(
        by_parent(&all, root2_id, "auth").is_some(),
        "auth adopted by the root"
    );
    let mcp2 = by_parent(&all, root2_id, "tools/call local__meta").unwrap();
    let backend2 = by_parent(&all, mcp2["span_id"].as_str().unwrap(), "tools/call local").unwrap();
    assert_eq!(backend2["attributes"]["mcp_edge.backend.kind"], "stdio");
    let stdio_tp = seen_by_stdio["traceparent"]
        .as_str()
        .expect("traceparent in _meta");
    assert_eq!(
        parent_id(stdio_tp),
        (META_TRACE, backend2["span_id"].as_str().unwrap())
    );

    // The refusal: the reason on the root and the auth span, status 401.
    let refused = all
        .iter()
        .find(|s| s["trace_id"] == "c".repeat(32) && s["name"] == "POST /mcp")
        .unwrap();
    assert_eq!(refused["attributes"]["http.response.status_code"], 401);
    assert_eq!(refused["attributes"]["error.type"], "invalid_key");
    let auth = by_parent(&all, refused["span_id"].as_str().unwrap(), "auth").unwrap();
    assert_eq!(auth["status"]["code"], "STATUS_CODE_ERROR");

    // The collector token went as a header; no key or token is in any span.
    assert!(
        all.iter()
            .all(|s| s["headers"]["authorization"] == format!("Bearer {COLLECTOR_TOKEN}"))
    );
    for s in &all {
        let text = json!([s["attributes"], s["events"], s["resource"], s["name"]]).to_string();
        for secret in [ALICE_KEY, "wrong-key-0000", COLLECTOR_TOKEN] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    // The collector gone: calls still succeed, promptly, and failures are counted.
    receiver.kill().await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let _ = client.meta("local__meta", None, None).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let failures = eventually(Duration::from_secs(10), async || {
        let Ok(r) = reqwest::get(&metrics_url).await else {
            return false;
        };
        let text = r.text().await.unwrap_or_default();
        mcp_edge::metrics::sample(&text, "mcp_edge_trace_export_failures_total", &[])
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(failures, "export failures counted");
    edge.kill().await.unwrap();

    // gRPC: another edge exporting to the receiver's gRPC port.
    let out2 = dir.join("spans-grpc.jsonl");
    let (_receiver2, ready2) = start_receiver(&out2, "--grpc-port").await;
    let grpc = format!("http://127.0.0.1:{}", ready2["grpc_port"]);
    let (mut edge2, port2) = spawn_edge(
        &fx,
        &[("MCP_OTEL_ENDPOINT", &grpc), ("MCP_OTEL_PROTOCOL", "grpc")],
        None,
    )
    .await;
    let r = client_trusting(&fx.ca_pem)
        .get(format!("https://localhost:{port2}/health"))
        .header("traceparent", &tp)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all = spans_until(&out2, |all| all.iter().any(|s| s["name"] == "GET /health")).await;
    let health = all.iter().find(|s| s["name"] == "GET /health").unwrap();
    assert_eq!(health["via"], "grpc");
    assert_eq!(health["trace_id"], CLIENT_TRACE);
    assert_eq!(health["resource"]["service.name"], "mcp-edge");
    edge2.kill().await.unwrap();
}

/// A collector that is down costs no spans: after a failed export, new traces are
/// shed for a while (backing off), and once the collector is back they arrive again.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_sheds_new_traces_until_it_is_back() {
    let fx = Fixture::new();
    let collector_port = free_port();
    let metrics_port = free_port();
    let (endpoint, metrics_listen) = (
        format!("http://127.0.0.1:{collector_port}"),
        format!("127.0.0.1:{metrics_port}"),
    );
    let (mut edge, port) = spawn_edge(
        &fx,
        &[
            ("MCP_OTEL_ENDPOINT", &endpoint),
            ("MCP_METRICS_LISTEN", &metrics_listen),
        ],
        None,
    )
    .await;
    let http = client_trusting(&fx.ca_pem);
    let health = format!("https://localhost:{port}/health");
    let admin = metrics_listen.parse().unwrap();
    let metric = async |name: &str| -> f64 {
        mcp_edge::metrics::sample(&metrics_text(admin).await, name, &[]).unwrap_or(0.0)
    };

    // Requests (each one a trace) until the failed export pauses new traces.
    let shed = eventually(Duration::from_secs(20), async || {
        let r = http.get(&health).send().await.unwrap();
        assert_eq!(r.status(), 200);
        metric("mcp_edge_traces_shed_total").await >= 5.0
    })
    .await;
    assert!(shed, "no trace shed while the collector is down");
    assert!(metric("mcp_edge_trace_export_failures_total").await >= 1.0);

    // A shed request opens no span at all: the chain's steps do not start traces of
    // their own (each would be built, shed and counted again).
    let client = Client::open(http.clone(), port).await;
    let before = metric("mcp_edge_traces_shed_total").await;
    client.tools_list(10).await;
    let shed = metric("mcp_edge_traces_shed_total").await - before;
    assert_eq!(shed, 10.0, "one trace shed per request");

    // The collector back on its port: traces arrive again.
    let out = fx.dir.path().join("spans.jsonl");
    let (_receiver, _) = start_python(&[
        &script("otlp_receiver.py"),
        "--out",
        out.to_str().unwrap(),
        "--http-port",
        &collector_port.to_string(),
    ])
    .await;
    let back = eventually(Duration::from_secs(30), async || {
        let _ = http.get(&health).send().await;
        spans(&out).iter().any(|s| s["name"] == "GET /health")
    })
    .await;
    assert!(back, "no trace exported once the collector was back");
    edge.kill().await.unwrap();
}

/// Past `otel.max_traces_per_second`, new traces are shed whole and counted by
/// reason; the traces kept arrive complete.
#[tokio::test(flavor = "multi_thread")]
async fn past_the_trace_budget_new_traces_are_shed_whole_and_counted() {
    let fx = Fixture::new();
    let out = fx.dir.path().join("spans.jsonl");
    let (_receiver, ready) = start_receiver(&out, "--http-port").await;
    let metrics_port = free_port();
    let (endpoint, metrics_listen) = (
        format!("http://127.0.0.1:{}", ready["http_port"]),
        format!("127.0.0.1:{metrics_port}"),
    );
    let (mut edge, port) = spawn_edge(
        &fx,
        &[
            ("MCP_OTEL_ENDPOINT", &endpoint),
            ("MCP_OTEL_MAX_TRACES_PER_SECOND", "2"),
            ("MCP_METRICS_LISTEN", &metrics_listen),
        ],
        None,
    )
    .await;
    let admin = metrics_listen.parse().unwrap();
    let shed_for = async |reason: &str| -> f64 {
        mcp_edge::metrics::sample(
            &metrics_text(admin).await,
            "mcp_edge_traces_shed_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };

    // initialize and notifications/initialized, then 20 calls.
    let started = std::time::Instant::now();
    let client = Client::open(client_trusting(&fx.ca_pem), port).await;
    client.tools_list(20).await;
    // A burst of 2, then 2 a second.
    let allowed = 2.0 + (started.elapsed().as_secs_f64() * 2.0).ceil();
    let roots = |all: &[Value]| -> Vec<Value> {
        all.iter()
            .filter(|s| s["name"] == "POST /mcp")
            .cloned()
            .collect()
    };
    let shed = shed_for("budget").await;
    assert!(shed >= 22.0 - allowed, "{shed} shed, {allowed} allowed");
    let all = spans_until(&out, |all| roots(all).len() as f64 + shed >= 22.0).await;
    let kept = roots(&all);
    assert_eq!(kept.len() as f64 + shed, 22.0, "each request kept or shed");
    for root in &kept {
        let id = root["span_id"].as_str().unwrap();
        for step in ["auth", "rate_limit"] {
            assert!(by_parent(&all, id, step).is_some(), "{step}: {all:#?}");
        }
    }
    assert_eq!(shed_for("queue_full").await, 0.0);
    assert_eq!(shed_for("collector_down").await, 0.0);
    edge.kill().await.unwrap();
}

/// A call sent to a replica that does not own its session is forwarded over the
/// peer hop; the owner's spans continue the same trace, under the entry replica's
/// MCP span (the client sent no trace context of its own), even past the owner's
/// trace budget (a trace under way is never cut in parts).
#[tokio::test]
async fn a_forwarded_call_continues_its_trace_on_the_session_owner() {
    let fx = Fixture::new();
    let dir = fx.dir.path().to_path_buf();
    let out = dir.join("spans.jsonl");
    let (_receiver, ready) = start_receiver(&out, "--http-port").await;
    let endpoint = format!("http://127.0.0.1:{}", ready["http_port"]);
    let ring = dir.join("session_keys");
    std::fs::write(&ring, mcp_edge::cluster::seal::generate_key()).unwrap();
    let ring = ring.display().to_string();
    // The owner's trace budget is spent by its own clients when the forwarded call
    // arrives: the call's trace is under way, so the owner's spans are kept anyway.
    let owner_metrics = format!("127.0.0.1:{}", free_port());
    let owner_peer = format!("127.0.0.1:{}", free_port());
    let replica = async |name: &str, extra: &[(&str, &str)]| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", name),
            ("MCP_PEER_LISTEN", "127.0.0.1:0"),
            ("MCP_SESSION_KEYS_FILE", ring.as_str()),
        ];
        env.extend_from_slice(extra);
        spawn_edge(&fx, &env, None).await
    };
    let (_owner, owner_port) = replica(
        "owner",
        &[
            ("MCP_OTEL_MAX_TRACES_PER_SECOND", "1"),
            ("MCP_METRICS_LISTEN", &owner_metrics),
            ("MCP_PEER_LISTEN", &owner_peer),
        ],
    )
    .await;
    let (_entry, entry_port) = replica("entry", &[]).await;
    let http = client_trusting(&fx.ca_pem);
    let opened = Client::open(http.clone(), owner_port).await;
    let admin = owner_metrics.parse().unwrap();
    let spent = eventually(Duration::from_secs(20), async || {
        opened.tools_list(1).await;
        let text = metrics_text(admin).await;
        mcp_edge::metrics::sample(&text, "mcp_edge_traces_shed_total", &[("reason", "budget")])
            >= Some(2.0)
    })
    .await;
    assert!(spent, "the owner's budget is spent by its own clients");
    let entry = Client {
        http,
        url: format!("https://localhost:{entry_port}/mcp"),
        session: opened.session.clone(),
    };
    let r = entry
        .post(json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
            "params":{"name":"search_docs","arguments":{"query":"guide"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        messages(&body)
            .iter()
            .any(|m| m["id"] == 3 && m["result"].is_object()),
        "{body}"
    );

    let service = |s: &Value| {
        s["resource"]["service.name"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let call = "tools/call search_docs";
    let all = spans_until(&out, |all| {
        all.iter()
            .any(|s| service(s) == "owner" && s["name"] == call)
            && all
                .iter()
                .any(|s| service(s) == "entry" && s["name"] == call)
    })
    .await;
    let entry_call = all
        .iter()
        .find(|s| service(s) == "entry" && s["name"] == call)
        .unwrap();
    let owner_root = all
        .iter()
        .find(|s| {
            service(s) == "owner"
                && s["name"] == "POST /mcp"
                && s["parent_span_id"] == entry_call["span_id"]
        })
        .unwrap_or_else(|| panic!("the owner's root under the entry's call span: {all:#?}"));
    assert_eq!(owner_root["trace_id"], entry_call["trace_id"]);
    let owner_call = by_parent(&all, owner_root["span_id"].as_str().unwrap(), call)
        .unwrap_or_else(|| panic!("the owner's call span under its root: {all:#?}"));
    assert_eq!(owner_call["trace_id"], entry_call["trace_id"]);
    assert_eq!(owner_root["attributes"]["mcp_edge.hop"], "from peer");

    // A request to the peer port that no replica signed is refused, and its root is
    // a new trace like any other: no `mcp_edge.hop`, the owner's budget applies.
    let forged = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{owner_peer}/mcp"))
        .header("traceparent", format!("00-{forged}-{CLIENT_SPAN}-01"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // One more forwarded call: its spans are exported after the refused request's.
    let r = entry
        .post(json!({"jsonrpc":"2.0","id":4,"method":"tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    let all = spans_until(&out, |all| {
        all.iter()
            .filter(|s| service(s) == "owner" && s["attributes"]["mcp_edge.hop"] == "from peer")
            .count()
            >= 2
    })
    .await;
    let forged_hops: Vec<&Value> = all
        .iter()
        .filter(|s| s["trace_id"] == forged && !s["attributes"]["mcp_edge.hop"].is_null())
        .collect();
    assert!(forged_hops.is_empty(), "{forged_hops:#?}");
}
