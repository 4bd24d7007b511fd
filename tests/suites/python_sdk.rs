//! The official MCP Python SDK as a client, over HTTPS with the test CA and a bearer key.

use crate::common::*;

#[tokio::test]
async fn python_sdk_calls_search_docs_over_https() {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import mcp, httpx2"])
        .output()
        .await;
    let installed = probe.map(|o| o.status.success()).unwrap_or(false);
    assert!(
        installed,
        "the official MCP Python SDK is missing: pip install -r tests/python/requirements.txt (.ci/run does this)"
    );
    let edge = Edge::start().await;
    let out = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/e2e_client.py"
        ))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("MCP_EDGE_CA", &edge.fx.ca_path)
        .env("MCP_EDGE_QUERY", "rustls certificates")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The SDK sends DELETE on exit and warns unless the answer is 200 or 204.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Session termination failed"),
        "the SDK took the session's close for a failure:\n{stderr}"
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["server"], "mcp-edge");
    assert_eq!(
        seen["tools"],
        serde_json::json!(["read_doc", "search_docs"])
    );
    assert_eq!(seen["hits"][0], "guide/tls.md");
    assert!(seen["resource_len"].as_u64().unwrap() > 0);
}
