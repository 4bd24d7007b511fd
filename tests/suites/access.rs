//! Who gets in: 401 challenges, 429 limits, Host/Origin checks, health endpoints.

use serde_json::json;

use crate::common::*;

fn list_tools() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
}

#[tokio::test]
async fn missing_or_wrong_key_gets_401_with_a_challenge() {
    let edge = Edge::start().await;
    let none = edge.post(None).json(&list_tools()).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let challenge = none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge, "Bearer realm=\"mcp-edge\"",
        "no error code without credentials; API keys only: no OAuth metadata to point at"
    );
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001);

    let wrong = edge
        .post(Some(WRONG_KEY))
        .json(&list_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let challenge = wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );

    let basic = edge
        .post(None)
        .header("authorization", "Basic YWxpY2U6eA==")
        .json(&list_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // A key in the query string is not a credential.
    let query = edge
        .http()
        .post(format!("{}?access_token={ALICE_KEY}", edge.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&list_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 401);
}

#[tokio::test]
async fn over_the_burst_gets_429_while_others_are_unaffected() {
    // carol's keys-file line says rate=60/min burst=3.
    let edge = Edge::start().await;
    let session = edge.session(CAROL_KEY).await;
    for _ in 0..3 {
        let r = edge.list_tools(CAROL_KEY, &session).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("ratelimit-remaining"));
    }
    let limited = edge.list_tools(CAROL_KEY, &session).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(limited.headers()["ratelimit-limit"], "3");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert!(limited.headers().contains_key("ratelimit-reset"));
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32029);

    // Another principal has its own budget (default 30 burst).
    let alice = edge.initialize(ALICE_KEY).await;
    assert_eq!(alice.status(), 200);
}

#[tokio::test]
async fn default_rate_from_env_applies_per_principal() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_RATE_LIMIT".into(), "60/min".into());
        env.insert("MCP_RATE_BURST".into(), "2".into());
    })
    .await;
    let alice = edge.session(ALICE_KEY).await;
    assert_eq!(edge.list_tools(ALICE_KEY, &alice).await.status(), 200);
    assert_eq!(edge.list_tools(ALICE_KEY, &alice).await.status(), 200);
    assert_eq!(edge.list_tools(ALICE_KEY, &alice).await.status(), 429);
    let bob = edge.session(BOB_KEY).await;
    assert_eq!(edge.list_tools(BOB_KEY, &bob).await.status(), 200);
}

#[tokio::test]
async fn key_guessing_is_throttled_per_ip_before_keys_are_checked() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_FAILED_AUTH_RATE".into(), "1/min".into());
        env.insert("MCP_FAILED_AUTH_BURST".into(), "3".into());
    })
    .await;
    for _ in 0..3 {
        let r = edge
            .post(Some(WRONG_KEY))
            .json(&list_tools())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = edge
        .post(Some(WRONG_KEY))
        .json(&list_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Locked out: even a valid key from this IP waits, so guesses cannot be confirmed.
    let valid = edge.initialize(ALICE_KEY).await;
    assert_eq!(valid.status(), 429);
}

#[tokio::test]
async fn foreign_host_and_origin_are_refused() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_PUBLIC_HOSTNAMES".into(), "mcp.example.test".into());
        env.insert(
            "MCP_ALLOWED_ORIGINS".into(),
            "https://app.example.test".into(),
        );
    })
    .await;
    let foreign_host = edge
        .post(Some(ALICE_KEY))
        .header("host", "evil.example")
        .json(&list_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_host.status(), 403);

    let public_host = edge
        .post(Some(ALICE_KEY))
        .header("host", format!("mcp.example.test:{}", edge.port()))
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(public_host.status(), 200);

    let evil_origin = edge
        .post(Some(ALICE_KEY))
        .header("origin", "https://evil.example")
        .json(&list_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(evil_origin.status(), 403);
    let body: serde_json::Value = evil_origin.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32003);

    for ok in ["https://app.example.test", "https://mcp.example.test"] {
        let r = edge
            .post(Some(ALICE_KEY))
            .header("origin", ok)
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "origin {ok}");
    }
}

#[tokio::test]
async fn health_and_ready_need_no_auth() {
    let edge = Edge::start().await;
    let health = edge
        .http()
        .get(format!("{}/health", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready = edge
        .http()
        .get(format!("{}/ready", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let missing = edge
        .http()
        .get(format!("{}/nope", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let big = "x".repeat(4096);
    let r = edge
        .post(Some(ALICE_KEY))
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query": big}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn idle_and_slow_connections_are_dropped() {
    use tokio::io::AsyncReadExt;
    let edge = Edge::start_with(|env| {
        env.insert("MCP_HANDSHAKE_TIMEOUT".into(), "500ms".into());
        env.insert("MCP_FIRST_REQUEST_TIMEOUT".into(), "500ms".into());
    })
    .await;
    // Connects but never starts TLS.
    let mut silent = tokio::net::TcpStream::connect(edge.running.addr())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server hangs up on a silent client");
    assert!(matches!(read, Ok(0) | Err(_)));

    // Finishes TLS but never sends a request.
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(edge.fx.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(edge.running.addr())
        .await
        .unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("handshake succeeds");
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("the server hangs up on a client that sends no request");
    assert!(matches!(read, Ok(0) | Err(_)));
}

#[tokio::test]
async fn plain_http_on_loopback_when_explicitly_configured() {
    let fx = Fixture::new();
    let mut env = fx.env();
    env.remove("MCP_TLS_CERT_FILE");
    env.remove("MCP_TLS_KEY_FILE");
    env.insert("MCP_TLS_MODE".into(), "off".into());
    env.insert("MCP_AUTH_MODE".into(), "none".into());
    let running = mcp_edge::app::start(load(&env)).await.unwrap();
    assert!(running.mcp_url().starts_with("http://"));
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/mcp", running.addr().port()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    running.shutdown().await;
}
