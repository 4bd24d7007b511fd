//! Backend notifications reach the client complete and in order, before the result of
//! the call they belong to (issue 8 item 11): server-everything's long-running tool
//! (progress) and the Python test server's `log_burst` (logging), behind the edge as
//! stdio backends and through an upstream HTTP backend, driven many times by the
//! official TypeScript and Python SDK clients over Streamable HTTP (POST stream for
//! progress, GET stream for logging) and the legacy SSE transport.

use serde_json::Value;

use super::backends::{edge_with_config, manifest, node_modules, python_sdk_installed};
use crate::common::*;

const ROUNDS: &str = "25";
const STEPS: &str = "4";

fn everything() -> String {
    format!(
        "[legacy_sse]\nenabled = true\n[[backends]]\nname = \"everything\"\ncommand = [\"node\", \"{}\", \"stdio\"]\n",
        node_modules()
            .join("@modelcontextprotocol/server-everything/dist/index.js")
            .display()
    )
}

fn python_server() -> String {
    format!(
        "[legacy_sse]\nenabled = true\n[[backends]]\nname = \"py\"\ncommand = [\"python3\", \"{}\"]\n",
        manifest("tests/python/stdio_server.py")
    )
}

async fn edge(toml: &str) -> (Edge, tempfile::TempDir) {
    edge_with_config(toml, |env| {
        env.insert("MCP_RATE_LIMIT".into(), "100000/min".into());
        env.insert("MCP_RATE_BURST".into(), "10000".into());
    })
    .await
}

/// Run one of the order-checking clients; `node` picks the TypeScript one.
async fn run(edge: &Edge, node: bool, url: &str, mode: &str) -> Value {
    let mut cmd = if node {
        let mut c = tokio::process::Command::new("node");
        c.arg(manifest("tests/node/progress_client.mjs"))
            .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path);
        c
    } else {
        python_sdk_installed();
        let mut c = tokio::process::Command::new("python3");
        c.arg(manifest("tests/python/progress_client.py"))
            .env("MCP_EDGE_CA", &edge.fx.ca_path);
        if url.ends_with("/sse") {
            c.arg("--sse");
        }
        c
    };
    let out = cmd
        .env("MCP_EDGE_URL", url)
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("ROUNDS", ROUNDS)
        .env("STEPS", STEPS)
        .env("MODE", mode)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Every client saw every call's notifications complete and in order (all reported).
/// `sdk_may_drop`: the TypeScript SDK over legacy SSE, whose Protocol layer can drop
/// progress that arrived just before the result in the same network chunk (it runs
/// notification handlers in a microtask but settles the response at once); for it
/// only the wire order, which the client records below the SDK, is the edge's doing.
fn assert_all_in_order(runs: &[(&str, &Value)]) {
    let rounds = ROUNDS.parse::<u64>().unwrap();
    let bad: Vec<String> = runs
        .iter()
        .filter(|(what, seen)| {
            let sdk_may_drop = what.contains("TypeScript") && what.contains("legacy SSE");
            seen["rounds"] != rounds
                || seen["bad"] != 0
                || (!sdk_may_drop && seen.get("sdkBad").is_some_and(|b| *b != 0))
        })
        .map(|(what, seen)| format!("{what}: {} of {rounds} calls: {seen}", seen["bad"]))
        .collect();
    assert!(
        bad.is_empty(),
        "calls whose {STEPS} notifications were not all there, in order, by the result:\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_complete_and_ordered_before_the_result() {
    let (edge, _dir) = edge(&everything()).await;
    let sse = format!("{}/sse", edge.base());
    let url = edge.url();
    let (ts_http, ts_sse, py_http, py_sse) = tokio::join!(
        run(&edge, true, &url, "progress"),
        run(&edge, true, &sse, "progress"),
        run(&edge, false, &url, "progress"),
        run(&edge, false, &sse, "progress"),
    );
    assert_all_in_order(&[
        ("TypeScript SDK, Streamable HTTP", &ts_http),
        ("TypeScript SDK, legacy SSE", &ts_sse),
        ("Python SDK, Streamable HTTP", &py_http),
        ("Python SDK, legacy SSE", &py_sse),
    ]);
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_through_an_upstream_http_backend_is_complete_and_ordered() {
    // The upstream is a second edge with server-everything behind it.
    let (upstream, _up_dir) = edge(&everything()).await;
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("token");
    std::fs::write(&credential, format!("{ALICE_KEY}\n")).unwrap();
    let toml = format!(
        "[[backends]]\nname = \"remote\"\nkind = \"http\"\nurl = \"{}\"\ncredential_file = \"{}\"\nca_file = \"{}\"\n",
        upstream.url(),
        credential.display(),
        upstream.fx.ca_path.display()
    );
    let (front, _dir) = edge(&toml).await;
    let url = front.url();
    let (ts, py) = tokio::join!(
        run(&front, true, &url, "progress"),
        run(&front, false, &url, "progress"),
    );
    assert_all_in_order(&[
        ("TypeScript SDK via an HTTP backend", &ts),
        ("Python SDK via an HTTP backend", &py),
    ]);
    front.running.shutdown().await;
    upstream.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_is_complete_and_ordered_on_the_get_stream_and_legacy_sse() {
    let (edge, _dir) = edge(&python_server()).await;
    let sse = format!("{}/sse", edge.base());
    let url = edge.url();
    let (ts_http, py_http, py_sse) = tokio::join!(
        run(&edge, true, &url, "logging"),
        run(&edge, false, &url, "logging"),
        run(&edge, false, &sse, "logging"),
    );
    assert_all_in_order(&[
        ("TypeScript SDK, Streamable HTTP GET stream", &ts_http),
        ("Python SDK, Streamable HTTP GET stream", &py_http),
        ("Python SDK, legacy SSE", &py_sse),
    ]);
    edge.running.shutdown().await;
}
