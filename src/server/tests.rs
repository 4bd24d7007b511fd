//! Every refusal of the `/mcp` chain, in memory: the real router with the real
//! steps and rmcp behind them (built-in docs backend), driven with `oneshot`; no
//! socket, TLS, Python or Node.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{AppState, router};
use crate::auth::{Authenticator, JwtVerifier, KeyStore, jwt};
use crate::config::{self, Config, FlagOverrides, Sources};
use crate::mcp;
use crate::ratelimit::RateLimits;

const ALICE: &str = "alice-key-0123456789abcdef0123456789";
const BOB: &str = "bob-key-0123456789abcdef0123456789ab";
const JWT_SECRET: &str = "an HS256 secret of at least thirty-two bytes";
const HOST: &str = "edge.test";

struct Edge {
    app: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn edge() -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(p("keys"), format!("alice {ALICE}\nbob {BOB}\n")).unwrap();
    std::fs::write(p("jwt_secret"), JWT_SECRET).unwrap();
    std::fs::create_dir(p("docs")).unwrap();
    std::fs::write(
        p("docs/limits.md"),
        "# Rate limits\nEvery principal has a budget.\n",
    )
    .unwrap();
    let toml = format!(
        r#"
[server]
host = "127.0.0.1"
port = 0
public_hostnames = ["{HOST}"]
max_body_bytes = 2048
[tls]
mode = "off"
[auth]
mode = "api-keys+jwt"
api_keys_file = "{keys}"
resource = "https://{HOST}/mcp"
[auth.jwt]
issuer = "https://idp.test"
[[auth.jwt.keys]]
file = "{secret}"
algorithms = ["HS256"]
[access]
tool_scopes = {{ search_docs = ["docs:read"] }}
[rate_limit]
rate = "1/hour"
burst = 3
failed_auth_rate = "1/hour"
failed_auth_burst = 2
[sessions]
max_per_principal = 1
[docs]
dir = "{docs}"
"#,
        keys = p("keys"),
        secret = p("jwt_secret"),
        docs = p("docs"),
    );
    std::fs::write(p("edge.toml"), toml).unwrap();
    let env = std::collections::BTreeMap::<&str, &str>::new();
    let config: Config = config::load(Sources {
        file: Some(p("edge.toml").into()),
        env: &env,
        flags: FlagOverrides::default(),
    })
    .unwrap();
    let config = Arc::new(config);
    let ctx = crate::auth::api_keys::KeyContext::from_config(&config);
    let keys = KeyStore::load_file(config.auth.api_keys_file.as_ref().unwrap(), &ctx).unwrap();
    let jwt_config = config.auth.jwt.clone().unwrap();
    let local = jwt::load_local_keys(&jwt_config).unwrap();
    let verifier = JwtVerifier::new(jwt_config, local, config.rate_limit.tiers.clone()).unwrap();
    let index = crate::docs::DocsIndex::build(&config.docs_dir).unwrap();
    let docs = mcp::DocsBackend::new(index);
    let backend = mcp::Backend::from_config(&config, Some(docs)).unwrap();
    let parts = mcp::build(&config, backend, CancellationToken::new());
    let state = super::app_state(super::StateParts {
        config: config.clone(),
        auth: Arc::new(Authenticator::new(Some(keys), Some(verifier))),
        limits: Arc::new(RateLimits::new(&config.rate_limit)),
        sessions: parts.registry.clone(),
        cert: crate::certs::CertStatus::new(),
        cluster: crate::cluster::Cluster::new(
            crate::cluster::KeyRing::random(),
            None,
            config.sessions.id_ttl,
        ),
        audit: Arc::new(crate::telemetry::audit::Audit::off()),
        oauth: None,
        refusals: None,
    });
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    Edge {
        app: router(state.clone(), parts.service),
        state,
        _dir: dir,
    }
}

fn jwt_for(sub: &str, scope: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let now = crate::certs::now_unix();
    let claims = json!({"iss": "https://idp.test", "aud": format!("https://{HOST}/mcp"),
        "sub": sub, "scope": scope, "iat": now, "exp": now + 300});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

const STATELESS: &str = "2026-07-28";

/// A stateless (2026-07-28) POST of `method` with `params`.
fn call(key: &str, method: &str, mut params: Value) -> Request<Body> {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientInfo": {"name": "chain-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let mut builder = post(key)
        .header("mcp-protocol-version", STATELESS)
        .header("mcp-method", method);
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        builder = builder.header("mcp-name", name);
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    builder.body(Body::from(body.to_string())).unwrap()
}

fn post(key: &str) -> http::request::Builder {
    let builder = Request::post("/mcp")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    match key {
        "" => builder,
        key => builder.header(header::AUTHORIZATION, format!("Bearer {key}")),
    }
}

fn initialize(key: &str) -> Request<Body> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "chain-test", "version": "1"}}});
    post(key).body(Body::from(body.to_string())).unwrap()
}

fn from_ip(mut request: Request<Body>, ip: [u8; 4]) -> Request<Body> {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    request
}

impl Edge {
    async fn send(&self, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let headers = parts.headers;
        let bytes = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            axum::body::to_bytes(body, 1 << 20),
        )
        .await
        .expect("a POST's answer ends")
        .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // JSON, or an event stream whose `data:` line is the JSON-RPC answer.
        let json = text
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .filter(|d| !d.trim().is_empty())
            .unwrap_or(&text);
        let body = serde_json::from_str(json.trim()).unwrap_or(Value::Null);
        (parts.status, headers, body)
    }
}

fn www_authenticate(headers: &http::HeaderMap) -> &str {
    headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn rpc_code(body: &Value) -> i64 {
    body["error"]["code"].as_i64().unwrap_or_default()
}

#[tokio::test]
async fn a_good_call_passes_every_step() {
    let edge = edge().await;
    let (status, headers, body) = edge.send(call(ALICE, "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["result"]["tools"].is_array(), "{body}");
    assert_eq!(headers["ratelimit-limit"], "3");
}

#[tokio::test]
async fn a_foreign_host_is_refused_before_auth() {
    let edge = edge().await;
    let mut request = call(ALICE, "tools/list", json!({}));
    request
        .headers_mut()
        .insert(header::HOST, "evil.test".parse().unwrap());
    let (status, _, body) = edge.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"]["message"].as_str().unwrap().contains("Host"));
    // Refused before the credential was looked at: a bad key is not counted either.
    let mut request = call("wrong", "tools/list", json!({}));
    request
        .headers_mut()
        .insert(header::HOST, "evil.test".parse().unwrap());
    for _ in 0..3 {
        assert_eq!(
            edge.send(from_ip(request_clone(&request), [10, 0, 0, 9]))
                .await
                .0,
            403
        );
    }
    let ok = from_ip(call(ALICE, "tools/list", json!({})), [10, 0, 0, 9]);
    assert_eq!(edge.send(ok).await.0, StatusCode::OK);
}

fn request_clone(request: &Request<Body>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(request.method())
        .uri(request.uri());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let edge = edge().await;
    let mut request = call(ALICE, "tools/list", json!({}));
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.test".parse().unwrap());
    let (status, _, body) = edge.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Origin")
    );
    let mut request = call(ALICE, "tools/list", json!({}));
    request
        .headers_mut()
        .insert(header::ORIGIN, format!("https://{HOST}").parse().unwrap());
    assert_eq!(edge.send(request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn no_key_gets_the_challenge_without_an_error_code() {
    let edge = edge().await;
    let (status, headers, body) = edge.send(call("", "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(rpc_code(&body), crate::mcp::codes::UNAUTHORIZED);
    let challenge = www_authenticate(&headers);
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
}

#[tokio::test]
async fn a_bad_key_is_invalid_token() {
    let edge = edge().await;
    let (status, headers, _) = edge
        .send(call(
            "not-a-key-of-anyone-000000000000",
            "tools/list",
            json!({}),
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www_authenticate(&headers).contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn a_locked_out_address_is_refused_even_with_a_good_key_but_not_without_one() {
    let edge = edge().await;
    let guess = || {
        from_ip(
            call("guess-0000000000000000000000000", "tools/list", json!({})),
            [10, 0, 0, 1],
        )
    };
    assert_eq!(edge.send(guess()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(edge.send(guess()).await.0, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = edge.send(guess()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    let good = from_ip(call(ALICE, "tools/list", json!({})), [10, 0, 0, 1]);
    let (status, _, body) = edge.send(good).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rpc_code(&body), crate::mcp::codes::RATE_LIMITED);
    // A request with no credential still learns why (its 401), and is not counted.
    let bare = from_ip(call("", "tools/list", json!({})), [10, 0, 0, 1]);
    assert_eq!(edge.send(bare).await.0, StatusCode::UNAUTHORIZED);
    // Another address is not affected.
    let other = from_ip(call(ALICE, "tools/list", json!({})), [10, 0, 0, 2]);
    assert_eq!(edge.send(other).await.0, StatusCode::OK);
}

#[tokio::test]
async fn calls_over_the_budget_get_429_and_protocol_traffic_does_not_spend_it() {
    let edge = edge().await;
    // `ping` and notifications are protocol traffic: their own budget.
    for _ in 0..5 {
        edge.send(call(BOB, "ping", json!({}))).await;
    }
    for remaining in ["2", "1", "0"] {
        let (status, headers, body) = edge.send(call(BOB, "tools/list", json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["ratelimit-remaining"], remaining);
    }
    let (status, headers, body) = edge.send(call(BOB, "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rpc_code(&body), crate::mcp::codes::RATE_LIMITED);
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Per principal: alice still has hers.
    assert_eq!(
        edge.send(call(ALICE, "tools/list", json!({}))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_jwt_without_the_tools_scope_gets_the_step_up_challenge() {
    let edge = edge().await;
    let args = json!({"name": "search_docs", "arguments": {"query": "limits"}});
    let token = jwt_for("erin", "other");
    let (status, headers, _) = edge.send(call(&token, "tools/call", args.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = www_authenticate(&headers);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"docs:read\""), "{challenge}");
    let token = jwt_for("erin", "docs:read");
    let (status, _, body) = edge.send(call(&token, "tools/call", args)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["result"]["content"].is_array(), "{body}");
}

#[tokio::test]
async fn another_principals_session_is_not_found_and_the_session_cap_holds() {
    let edge = edge().await;
    let (status, headers, _) = edge.send(initialize(ALICE)).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers[crate::mcp::SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(edge.state.sessions.len(), 1);
    // bob presents alice's session id: it does not exist for him.
    let mut request = call(BOB, "tools/list", json!({}));
    request
        .headers_mut()
        .insert(crate::mcp::SESSION_HEADER, session.parse().unwrap());
    let (status, _, body) = edge.send(request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(rpc_code(&body), crate::mcp::codes::NOT_FOUND);
    // A tampered id neither.
    let mut request = call(ALICE, "tools/list", json!({}));
    request.headers_mut().insert(
        crate::mcp::SESSION_HEADER,
        format!("{session}x").parse().unwrap(),
    );
    assert_eq!(edge.send(request).await.0, StatusCode::NOT_FOUND);
    // sessions.max_per_principal = 1: alice's second session is refused.
    let (status, _, body) = edge.send(initialize(ALICE)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session"),
        "{body}"
    );
    assert_eq!(edge.send(initialize(BOB)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_body_is_413_from_its_header_or_its_bytes() {
    let edge = edge().await;
    let big = "x".repeat(4096);
    let declared = post(ALICE)
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    assert_eq!(edge.send(declared).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let streamed = post(ALICE)
        .body(Body::from_stream(futures::stream::iter([Ok::<
            _,
            std::io::Error,
        >(
            bytes::Bytes::from(big),
        )])))
        .unwrap();
    let (status, _, body) = edge.send(streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(rpc_code(&body), crate::mcp::codes::INVALID_REQUEST);
}

#[tokio::test]
async fn while_shutting_down_new_calls_get_503() {
    let edge = edge().await;
    edge.state.in_flight.close();
    let (status, headers, body) = edge.send(call(ALICE, "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rpc_code(&body), crate::mcp::codes::BUSY);
    assert!(headers.contains_key(header::RETRY_AFTER));
}
