//! Every reload kind, broken under a running server: the last good value stays in
//! force (a real request through the real server), and the failure is counted both
//! in the server's reload counts and in `mcp_edge_secret_reloads_total`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_edge::metrics::sample;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::common::jwt::*;
use crate::common::*;

const RESOURCE: &str = "https://mcp.example.test/mcp";

/// `mcp_edge_secret_reloads_total{kind, result="failed"}` on the edge's admin listener
/// (the registry is the process's: other tests may move it too, never down).
async fn failures_metric(edge: &Edge, kind: &str) -> f64 {
    let admin = edge.running.admin_addr().expect("admin listener");
    let text = metrics_text(admin).await;
    sample(
        &text,
        "mcp_edge_secret_reloads_total",
        &[("kind", kind), ("result", "failed")],
    )
    .unwrap_or(0.0)
}

/// Wait until the edge has refused `kind`'s new content, and check the metric moved.
async fn assert_failure_counted(edge: &Edge, kind: &str, metric_before: f64) {
    let counts = edge
        .running
        .secrets()
        .and_then(|r| r.counts(kind))
        .unwrap_or_else(|| panic!("{kind} is reloadable"));
    assert!(
        eventually(Duration::from_secs(10), async || counts
            .failed
            .load(Ordering::Relaxed)
            >= 1)
        .await,
        "{kind}: the broken source was read and refused"
    );
    let after = failures_metric(edge, kind).await;
    assert!(
        after > metric_before,
        "{kind}: failures {metric_before} → {after}"
    );
}

#[tokio::test]
async fn broken_tls_certificate_keeps_serving_the_last_one() {
    let edge = Edge::start().await;
    let before = failures_metric(&edge, "tls_certificate").await;
    std::fs::write(&edge.fx.cert_path, "not a certificate\n").unwrap();
    assert_failure_counted(&edge, "tls_certificate", before).await;
    // A new handshake (a new client) still gets the certificate the test CA signed.
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
}

#[tokio::test]
async fn broken_api_keys_file_keeps_the_last_keys() {
    let edge = Edge::start().await;
    let before = failures_metric(&edge, "api_keys").await;
    std::fs::write(&edge.fx.keys_path, "garbage\n").unwrap();
    assert_failure_counted(&edge, "api_keys", before).await;
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
    assert_eq!(edge.initialize(WRONG_KEY).await.status(), 401);
}

#[tokio::test]
async fn broken_jwt_key_file_keeps_the_last_key() {
    const SECRET: &str = "first-shared-secret-0123456789-abcdef";
    let keys = tempfile::tempdir().unwrap();
    let secret_file = keys.path().join("jwt_hs");
    std::fs::write(&secret_file, SECRET).unwrap();
    let edge = hs256_edge(&secret_file, RESOURCE).await;
    let token = hs256_token(SECRET, RESOURCE, "ana");
    assert_eq!(edge.initialize(&token).await.status(), 200);
    let before = failures_metric(&edge, "jwt_keys").await;
    // Too short for an HMAC secret.
    std::fs::write(&secret_file, "short\n").unwrap();
    assert_failure_counted(&edge, "jwt_keys", before).await;
    assert_eq!(edge.initialize(&token).await.status(), 200);
}

#[tokio::test]
async fn broken_session_key_ring_keeps_open_sessions() {
    let keys = tempfile::tempdir().unwrap();
    let ring = keys.path().join("session_keys");
    let key = mcp_edge::cluster::seal::generate_key().to_string();
    std::fs::write(&ring, format!("{key}\n")).unwrap();
    let edge = Edge::start_with(|env| {
        env.insert("MCP_SESSION_KEYS_FILE".into(), ring.display().to_string());
    })
    .await;
    let session = edge.session(ALICE_KEY).await;
    let before = failures_metric(&edge, "session_keys").await;
    std::fs::write(&ring, "not a key\n").unwrap();
    assert_failure_counted(&edge, "session_keys", before).await;
    // The session id was sealed with the last good ring, which still opens it.
    assert_eq!(edge.list_tools(ALICE_KEY, &session).await.status(), 200);
}

#[tokio::test]
async fn failing_jwks_url_keeps_the_last_keys() {
    let keys = tempfile::tempdir().unwrap();
    let idp = Idp::new(keys.path());
    let jwks = JwksServer::start(json!({"keys": [ec_jwk(&idp.ec, "ec-a")]})).await;
    let toml = format!(
        "[auth]\nmode = \"jwt\"\nresource = \"{RESOURCE}\"\n[auth.jwt]\nissuer = \"{ISSUER}\"\njwks_url = \"{}\"\njwks_refresh = \"200ms\"\n",
        jwks.url
    );
    let edge = Edge::start_with_file(
        |_| toml,
        |env| {
            env.remove("MCP_API_KEYS_FILE");
        },
    )
    .await;
    let token = idp.sign(
        Algorithm::ES256,
        Some("ec-a"),
        &claims(RESOURCE, "ana", "mcp"),
    );
    assert_eq!(edge.initialize(&token).await.status(), 200);
    let counts = edge.running.secrets().unwrap().counts("jwks").unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || counts
            .ok
            .load(Ordering::Relaxed)
            >= 1)
        .await,
        "the JWKS is refetched on its timer"
    );
    let before = failures_metric(&edge, "jwks").await;
    // The IdP fails: its endpoint answers 500.
    *jwks.document.lock().unwrap() = None;
    assert_failure_counted(&edge, "jwks", before).await;
    assert_eq!(edge.initialize(&token).await.status(), 200);
}

#[tokio::test]
async fn docs_root_gone_keeps_the_last_index() {
    let edge = Edge::start().await;
    let search = async || {
        let client = edge.mcp(ALICE_KEY).await;
        let result = client
            .call_tool(
                CallToolRequestParams::new("search_docs")
                    .with_arguments(json!({"query": "rustls"}).as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        client.cancel().await.unwrap();
        serde_json::to_string(&result).unwrap()
    };
    assert!(search().await.contains("guide/tls.md"));
    let before = failures_metric(&edge, "docs_index").await;
    let away = edge.fx.dir.path().join("docs-away");
    std::fs::rename(&edge.fx.docs_dir, &away).unwrap();
    // The follower may see the root go; SIGHUP surely rescans it.
    edge.running.secrets().unwrap().reload_all();
    assert_failure_counted(&edge, "docs_index", before).await;
    assert!(
        search().await.contains("guide/tls.md"),
        "the last index still answers"
    );
    // Back in place, a forced rescan succeeds.
    std::fs::rename(&away, &edge.fx.docs_dir).unwrap();
    let counts = edge
        .running
        .secrets()
        .unwrap()
        .counts("docs_index")
        .unwrap();
    let ok = counts.ok.load(Ordering::Relaxed);
    edge.running.secrets().unwrap().reload_all();
    assert!(
        eventually(Duration::from_secs(10), async || counts
            .ok
            .load(Ordering::Relaxed)
            > ok)
        .await,
        "the rescan of the restored root is counted"
    );
    assert!(search().await.contains("guide/tls.md"));
}
