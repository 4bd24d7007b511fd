//! JWTs, the MCP authorization behaviour (RFC 9728 metadata, challenges, scopes) and
//! per-tool access. Each attack on the JWT check is its own test.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::common::jwt::*;
use crate::common::*;

const RESOURCE: &str = "https://mcp.example.test/mcp";
const METADATA: &str = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp";

async fn edge_with_idp() -> (Edge, Idp) {
    let keys_dir = tempfile::tempdir().unwrap().keep();
    let idp = Idp::new(&keys_dir);
    let toml = idp.config_toml(RESOURCE, "max_token_bytes = 2048");
    let edge = Edge::start_with_file(|_| toml, |_| {}).await;
    (edge, idp)
}

fn init_body() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
}

async fn status_with(edge: &Edge, token: &str) -> reqwest::Response {
    edge.post(Some(token))
        .json(&init_body())
        .send()
        .await
        .unwrap()
}

/// 401 with the MCP challenge: invalid_token, resource_metadata and scope.
async fn assert_refused(edge: &Edge, token: &str) {
    let r = status_with(edge, token).await;
    assert_eq!(r.status(), 401, "token should be refused");
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{METADATA}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
}

fn good() -> Value {
    claims(RESOURCE, "ana", "mcp docs:read")
}

#[tokio::test]
async fn every_configured_key_type_verifies() {
    let (edge, idp) = edge_with_idp().await;
    for (alg, kid) in [
        (Algorithm::RS256, "rsa1"),
        (Algorithm::ES256, "ec1"),
        (Algorithm::EdDSA, "ed1"),
        (Algorithm::HS256, "hs1"),
    ] {
        let r = status_with(&edge, &idp.sign(alg, Some(kid), &good())).await;
        assert_eq!(r.status(), 200, "{alg:?}");
    }
    // Without a kid, the key is found by algorithm.
    let r = status_with(&edge, &idp.sign(Algorithm::ES256, None, &good())).await;
    assert_eq!(r.status(), 200);
    // API keys keep working beside JWTs.
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (edge, _idp) = edge_with_idp().await;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(good().to_string().as_bytes());
    assert_refused(&edge, &format!("{header}.{body}.")).await;
}

#[tokio::test]
async fn hmac_signed_with_the_rsa_public_key_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let public_pem = std::fs::read(&idp.rsa_pub).unwrap();
    for kid in [Some("rsa1"), None] {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let forged = jsonwebtoken::encode(
            &header,
            &good(),
            &jsonwebtoken::EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        assert_refused(&edge, &forged).await;
    }
}

#[tokio::test]
async fn unknown_critical_header_is_refused() {
    // RFC 7515 §4.1.11: a `crit` extension the recipient does not understand means reject,
    // even with a good signature.
    let (edge, idp) = edge_with_idp().await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(idp.rsa.serialize_pem().as_bytes()).unwrap();
    for crit in [vec!["https://example.test/must-understand"], vec![]] {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some("rsa1".into());
        header.crit = Some(crit.iter().map(|c| c.to_string()).collect());
        header
            .extras
            .insert("https://example.test/must-understand", true);
        let token = jsonwebtoken::encode(&header, &good(), &key).unwrap();
        assert_refused(&edge, &token).await;
    }
}

#[tokio::test]
async fn expired_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let mut c = good();
    c["exp"] = json!(now() - 60);
    assert_refused(&edge, &idp.sign(Algorithm::RS256, Some("rsa1"), &c)).await;
}

#[tokio::test]
async fn not_yet_valid_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let mut c = good();
    c["nbf"] = json!(now() + 600);
    assert_refused(&edge, &idp.sign(Algorithm::RS256, Some("rsa1"), &c)).await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let c = claims("https://another-server.test/mcp", "ana", "mcp docs:read");
    assert_refused(&edge, &idp.sign(Algorithm::RS256, Some("rsa1"), &c)).await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let mut c = good();
    c["iss"] = json!("https://evil-idp.test");
    assert_refused(&edge, &idp.sign(Algorithm::RS256, Some("rsa1"), &c)).await;
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let token = idp.sign(Algorithm::RS256, Some("rsa1"), &good());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = good();
    c["sub"] = json!("admin");
    parts[1] = b64(c.to_string().as_bytes());
    assert_refused(&edge, &parts.join(".")).await;
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    assert_refused(
        &edge,
        &idp.sign(Algorithm::RS256, Some("rsa-unknown"), &good()),
    )
    .await;
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let mut c = good();
    c["padding"] = json!("x".repeat(4096));
    assert_refused(&edge, &idp.sign(Algorithm::RS256, Some("rsa1"), &c)).await;
}

#[tokio::test]
async fn token_in_query_string_is_refused() {
    let (edge, idp) = edge_with_idp().await;
    let token = idp.sign(Algorithm::RS256, Some("rsa1"), &good());
    for param in ["access_token", "token"] {
        let r = edge
            .http()
            .post(format!("{}?{param}={token}", edge.url()))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&init_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(&format!("resource_metadata=\"{METADATA}\"")));
    }
}

#[tokio::test]
async fn missing_required_scope_gets_403_insufficient_scope() {
    let (edge, idp) = edge_with_idp().await;
    let c = claims(RESOURCE, "ana", "docs:read");
    let r = status_with(&edge, &idp.sign(Algorithm::RS256, Some("rsa1"), &c)).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{METADATA}\"")),
        "{challenge}"
    );
}

#[tokio::test]
async fn tools_need_their_scopes() {
    let (edge, idp) = edge_with_idp().await;
    let token = idp.sign(
        Algorithm::RS256,
        Some("rsa1"),
        &claims(RESOURCE, "ana", "mcp"),
    );
    let init = status_with(&edge, &token).await;
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let send = |body: Value| {
        edge.post(Some(&token))
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
    };
    assert_eq!(
        send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await
            .unwrap()
            .status(),
        202
    );
    let list = send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await
        .unwrap();
    let msgs = messages(&list.text().await.unwrap());
    let tools = msgs.iter().find(|m| m["id"] == 2).unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        tools.is_empty(),
        "a token without docs:read sees no docs tools: {tools:?}"
    );
    let call = send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"tls"}}}))
        .await
        .unwrap();
    assert_eq!(call.status(), 403);
    let challenge = call.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"docs:read\""),
        "{challenge}"
    );

    let reader = idp.sign(
        Algorithm::RS256,
        Some("rsa1"),
        &claims(RESOURCE, "ana", "mcp docs:read"),
    );
    let client_sees = {
        let c = edge.mcp(&reader).await;
        let names: Vec<String> = c
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        c.cancel().await.unwrap();
        names
    };
    assert_eq!(client_sees.len(), 2);
}

#[tokio::test]
async fn protected_resource_metadata_follows_rfc9728() {
    let (edge, _idp) = edge_with_idp().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = edge
            .http()
            .get(format!("{}{path}", edge.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(doc["authorization_servers"], json!([ISSUER]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["scopes_supported"], json!(["docs:read", "mcp"]));
    }
    // Missing credentials: a challenge without an error code, pointing at the metadata.
    let r = edge.post(None).json(&init_body()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"mcp-edge\", resource_metadata=\"{METADATA}\", scope=\"mcp\"")
    );
}

#[tokio::test]
async fn api_key_tool_allowlists_filter_and_refuse() {
    let edge = Edge::start().await;
    std::fs::write(
        &edge.fx.keys_path,
        format!("alice {ALICE_KEY} tools=read_doc\nbob {BOB_KEY}\n"),
    )
    .unwrap();
    let reloaded = eventually(std::time::Duration::from_secs(5), async || {
        let c = edge.mcp(ALICE_KEY).await;
        let n = c.list_all_tools().await.unwrap().len();
        c.cancel().await.unwrap();
        n == 1
    })
    .await;
    assert!(reloaded, "alice sees only read_doc");
    let alice = edge.mcp(ALICE_KEY).await;
    let err = alice
        .call_tool(
            rmcp::model::CallToolRequestParams::new("search_docs")
                .with_arguments(json!({"query": "tls"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not permitted") && text.contains("alice"),
        "{text}"
    );
    alice.cancel().await.unwrap();
    let bob = edge.mcp(BOB_KEY).await;
    assert_eq!(bob.list_all_tools().await.unwrap().len(), 2);
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn rate_tier_from_a_jwt_claim() {
    let (edge, idp) = edge_with_idp().await;
    let mut gold = good();
    gold["tier"] = json!("gold");
    // The headers describe the call budget, so look at a call (tools/list).
    for (token, limit) in [
        (idp.sign(Algorithm::RS256, Some("rsa1"), &gold), "500"),
        (idp.sign(Algorithm::RS256, Some("rsa1"), &good()), "30"),
    ] {
        let session = edge.session(&token).await;
        let r = edge.list_tools(&token, &session).await;
        assert_eq!(r.headers()["ratelimit-limit"], limit);
    }
}

#[tokio::test]
async fn jwks_url_is_fetched_and_refetched_for_an_unknown_kid() {
    use std::sync::{Arc, Mutex};
    // A local stand-in for the IdP's JWKS endpoint.
    let keys_dir = tempfile::tempdir().unwrap();
    let idp = Idp::new(keys_dir.path());
    let jwk = |kp: &rcgen::KeyPair, kid: &str| {
        // x and y of the P-256 point from the uncompressed SEC1 encoding.
        let raw = kp.public_key_raw();
        json!({"kty":"EC","crv":"P-256","kid":kid,"alg":"ES256","use":"sig",
               "x": b64(&raw[1..33]), "y": b64(&raw[33..65])})
    };
    let served = Arc::new(Mutex::new(json!({"keys": [jwk(&idp.ec, "ec-a")]})));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let served = served.clone();
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let served = served.clone();
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { axum::Json(served.lock().unwrap().clone()) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!(
        "http://127.0.0.1:{}/jwks.json",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let edge = Edge::start_with_file(
        |_| {
            format!(
                "[auth]\nmode = \"jwt\"\nresource = \"{RESOURCE}\"\n[auth.jwt]\nissuer = \"{ISSUER}\"\njwks_url = \"{jwks_url}\"\njwks_refresh = \"1h\"\n"
            )
        },
        |env| {
            env.remove("MCP_API_KEYS_FILE");
        },
    )
    .await;
    let token_a = idp.sign(Algorithm::ES256, Some("ec-a"), &good());
    assert_eq!(status_with(&edge, &token_a).await.status(), 200);
    // The IdP rotates: the same key is now published under a new kid.
    *served.lock().unwrap() = json!({"keys": [jwk(&idp.ec, "ec-b")]});
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    let token_b = idp.sign(Algorithm::ES256, Some("ec-b"), &good());
    assert_eq!(
        status_with(&edge, &token_b).await.status(),
        200,
        "unknown kid triggers a refetch"
    );
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) > before);
    // Unknown kids do not hammer the IdP: a burst makes at most one more fetch.
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        let bogus = idp.sign(Algorithm::ES256, Some("nope"), &good());
        assert_eq!(status_with(&edge, &bogus).await.status(), 401);
    }
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) <= before + 1);
}

#[tokio::test]
async fn python_sdk_connects_with_a_bearer_jwt() {
    let (edge, idp) = edge_with_idp().await;
    let token = idp.sign(Algorithm::RS256, Some("rsa1"), &good());
    let out = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/e2e_client.py"
        ))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", &token)
        .env("MCP_EDGE_CA", &edge.fx.ca_path)
        .env("MCP_EDGE_QUERY", "rustls")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(seen["hits"][0], "guide/tls.md");
}
