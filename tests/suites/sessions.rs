//! Sessions belong to the principal that created them; caps hold.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn another_principals_session_id_gets_404() {
    let edge = Edge::start().await;
    let init = edge.initialize(ALICE_KEY).await;
    assert_eq!(init.status(), 200);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let hijack = edge
        .post(Some(BOB_KEY))
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"tls"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(hijack.status(), 404);
    let bob_delete = edge
        .http()
        .delete(edge.url())
        .bearer_auth(BOB_KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(bob_delete.status(), 404);

    // The owner still drives it, and can close it.
    let notified = edge
        .post(Some(ALICE_KEY))
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(notified.status(), 202);
    let call = edge
        .post(Some(ALICE_KEY))
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"tls"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    let msgs = messages(&call.text().await.unwrap());
    assert!(
        msgs.iter().any(|m| m["id"] == 3 && m["result"].is_object()),
        "{msgs:?}"
    );
    assert_eq!(edge.running.state().sessions.len(), 1);
    let delete = edge
        .http()
        .delete(edge.url())
        .bearer_auth(ALICE_KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    // 204, which every official SDK takes for success (the Python SDK warns on 202).
    assert_eq!(delete.status(), 204);
    assert!(delete.headers().get("content-type").is_none());
    assert!(delete.bytes().await.unwrap().is_empty());
    assert_eq!(edge.running.state().sessions.len(), 0);
}

#[tokio::test]
async fn session_caps_per_principal_and_total() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_MAX_SESSIONS".into(), "3".into());
        env.insert("MCP_MAX_SESSIONS_PER_PRINCIPAL".into(), "2".into());
    })
    .await;
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
    let third = edge.initialize(ALICE_KEY).await;
    assert_eq!(third.status(), 429);
    assert_eq!(edge.initialize(BOB_KEY).await.status(), 200);
    let full = edge.initialize(CAROL_KEY).await;
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn idle_sessions_expire_and_free_their_slot() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_SESSION_IDLE_TIMEOUT".into(), "1s".into());
        env.insert("MCP_MAX_SESSIONS_PER_PRINCIPAL".into(), "1".into());
    })
    .await;
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 429);
    let freed = eventually(std::time::Duration::from_secs(15), async || {
        edge.running.state().sessions.is_empty()
    })
    .await;
    assert!(freed, "the idle session is swept");
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
}
