//! Per-principal credentials (`[backends.credentials]`): each principal's children get
//! that principal's own secret (files `<dir>/<principal>/<NAME>`, or a request header),
//! nobody else's; a missing one is a clear JSON-RPC error; header values are never
//! logged.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::ClientConfig;
use rmcp::service::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use super::backends::edge_with_config;
use super::per_principal::{call_text, stateful, stateless_client};
use crate::common::*;

const EVE_KEY: &str = "eve-key-0123456789abcdef";
const CONTACT: &str = "ask #platform in Slack";

/// The stateful server with `[backends.credentials]` = `credentials` (TOML lines).
fn with_credentials(credentials: &str) -> String {
    stateful(&format!("[backends.credentials]\n{credentials}"))
}

/// The edge with `toml` and keys for alice, bob, carol and `extra` (`name key` lines).
async fn edge(toml: &str, extra: &str) -> (Edge, tempfile::TempDir) {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        keys.path(),
        format!("alice {ALICE_KEY}\nbob {BOB_KEY}\ncarol {CAROL_KEY}\n{extra}"),
    )
    .unwrap();
    let (_, keys_path) = keys.keep().unwrap();
    let keys_text = keys_path.display().to_string();
    edge_with_config(toml, move |env| {
        env.insert("MCP_API_KEYS_FILE".into(), keys_text);
        env.insert("MCP_RATE_LIMIT".into(), "100000/min".into());
        env.insert("MCP_RATE_BURST".into(), "100000".into());
        env.insert("MCP_KILL_GRACE".into(), "1s".into());
    })
    .await
}

fn put(dir: &Path, principal: &str, name: &str, value: &str) {
    std::fs::create_dir_all(dir.join(principal)).unwrap();
    // Written beside and renamed, as a secret mount swaps it: never half a file.
    let tmp = dir.join(principal).join(format!(".{name}.tmp"));
    std::fs::write(&tmp, format!("{value}\n")).unwrap();
    std::fs::rename(tmp, dir.join(principal).join(name)).unwrap();
}

/// An rmcp client in session mode (the edge starts a child for its session).
async fn session_client(
    edge: &Edge,
    key: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::with_client(
        edge.http(),
        StreamableHttpClientTransportConfig::with_uri(edge.url()).auth_header(key),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .expect("session client connects")
}

#[tokio::test]
async fn each_principal_child_sees_its_own_credential_file_and_rotation_as_documented() {
    let secrets = tempfile::tempdir().unwrap();
    put(secrets.path(), "alice", "STATE_TOKEN", "alice-token-1");
    put(secrets.path(), "bob", "STATE_TOKEN", "bob-token-1");
    let toml = with_credentials(&format!(
        "dir = \"{}\"\nnames = [\"STATE_TOKEN\"]\ncontact = \"{CONTACT}\"\n",
        secrets.path().display()
    ));
    let (edge, _dir) = edge(&toml, "").await;
    let live = edge.running.backend().live_children().unwrap();
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "no child is started without a principal (no probe)"
    );

    // Stateless (2026-07-28): each principal's own child, its own credential.
    let alice = stateless_client(&edge, ALICE_KEY).await;
    let bob = stateless_client(&edge, BOB_KEY).await;
    let token = json!({"name": "STATE_TOKEN"});
    for _ in 0..3 {
        assert_eq!(
            call_text(&alice, "env", token.clone()).await,
            "alice-token-1"
        );
        assert_eq!(call_text(&bob, "env", token.clone()).await, "bob-token-1");
    }
    // Session mode: the session's child is its principal's, with that credential.
    let alice_session = session_client(&edge, ALICE_KEY).await;
    let bob_session = session_client(&edge, BOB_KEY).await;
    assert_eq!(
        call_text(&alice_session, "env", token.clone()).await,
        "alice-token-1"
    );
    assert_eq!(
        call_text(&bob_session, "env", token.clone()).await,
        "bob-token-1"
    );

    // Rotated: a new child (a new session) sees the new value at once...
    put(secrets.path(), "alice", "STATE_TOKEN", "alice-token-2");
    let alice_session2 = session_client(&edge, ALICE_KEY).await;
    assert_eq!(
        call_text(&alice_session2, "env", token.clone()).await,
        "alice-token-2"
    );
    // ...running ones keep theirs until they restart.
    assert_eq!(
        call_text(&alice, "env", token.clone()).await,
        "alice-token-1"
    );
    assert_eq!(
        call_text(&alice_session, "env", token.clone()).await,
        "alice-token-1"
    );
    // Alice's stateless child dies (a crash, an OOM kill): its restart reads the file.
    let pid: i32 = call_text(&alice, "pid", json!({})).await.parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = eventually(Duration::from_secs(10), async || {
        edge.stateless_text(ALICE_KEY, "env", token.clone()).await == "alice-token-2"
    })
    .await;
    assert!(restarted, "a restarted child reads the rotated file");
    assert_eq!(
        edge.stateless_text(BOB_KEY, "env", token.clone()).await,
        "bob-token-1",
        "bob's child never saw alice's rotation"
    );
    for c in [alice, bob, alice_session, bob_session, alice_session2] {
        c.cancel().await.unwrap();
    }
    edge.running.shutdown().await;
}

#[tokio::test]
async fn a_missing_credential_is_a_clear_error_and_starts_no_child() {
    let secrets = tempfile::tempdir().unwrap();
    put(secrets.path(), "alice", "STATE_TOKEN", "alice-token");
    let toml = with_credentials(&format!(
        "dir = \"{}\"\nnames = [\"STATE_TOKEN\"]\ncontact = \"{CONTACT}\"\n",
        secrets.path().display()
    ));
    let (edge, _dir) = edge(&toml, &format!(".. {EVE_KEY}\n")).await;
    let live = edge.running.backend().live_children().unwrap();
    let expected = secrets.path().join("carol/STATE_TOKEN");

    // Stateless: the JSON-RPC error names the credential, its file and whom to ask.
    let body = stateless_call(1, "env", json!({"name": "STATE_TOKEN"}), false);
    let text = edge
        .stateless(&edge.http(), CAROL_KEY, &body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reply = messages(&text).into_iter().find(|m| m["id"] == 1).unwrap();
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("STATE_TOKEN"), "{text}");
    assert!(message.contains(&expected.display().to_string()), "{text}");
    assert!(message.contains(CONTACT), "{text}");
    assert_eq!(reply["error"]["code"], -32600, "{text}");
    assert_eq!(reply["error"]["data"]["missingCredential"], "STATE_TOKEN");
    assert_eq!(reply["error"]["data"]["contact"], CONTACT);
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "no child without its credential"
    );

    // Session mode: the handshake itself says so (the session's backend cannot start).
    let r = edge.initialize(CAROL_KEY).await;
    let text = r.text().await.unwrap();
    assert!(
        text.contains("STATE_TOKEN") && text.contains(CONTACT),
        "{text}"
    );
    assert_eq!(live.load(Ordering::Relaxed), 0);

    // A principal whose name would leave the directory (API keys allow "..", JWT
    // subjects even '/'; unit tests cover those): refused, no file looked at.
    let refused = edge
        .stateless_text(EVE_KEY, "env", json!({"name": "STATE_TOKEN"}))
        .await;
    assert!(refused.contains("principal \"..\""), "{refused}");
    assert!(refused.contains("is \".\" or \"..\""), "{refused}");
    assert_eq!(live.load(Ordering::Relaxed), 0);

    // The principal with the file is served, and the others' errors cost nothing.
    assert_eq!(
        edge.stateless_text(ALICE_KEY, "env", json!({"name": "STATE_TOKEN"}))
            .await,
        "alice-token"
    );
    edge.running.shutdown().await;
}

/// A stateless `tools/call` of `name` to the real binary on `port`, with `headers`.
async fn call_with_headers(
    http: &reqwest::Client,
    port: u16,
    key: &str,
    headers: &[(&str, &str)],
    name: &str,
    arguments: serde_json::Value,
) -> String {
    let body = stateless_call(1, name, arguments, false);
    let mut rb = http
        .post(format!("https://localhost:{port}/mcp"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name);
    for (h, v) in headers {
        rb = rb.header(*h, *v);
    }
    answer_text(&rb.json(&body).send().await.unwrap().text().await.unwrap())
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn a_header_supplied_credential_reaches_only_the_senders_child_and_is_never_logged() {
    let fx = Fixture::new();
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(
        &config,
        with_credentials(&format!(
            "from_header = {{ \"X-State-Token\" = \"STATE_TOKEN\" }}\ncontact = \"{CONTACT}\"\n"
        )),
    )
    .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut child, port) = spawn_edge(
        &fx,
        &[
            ("MCP_EDGE_CONFIG", config.to_str().unwrap()),
            ("MCP_LOG_LEVEL", "trace"),
            ("MCP_AUDIT_OUTPUT", "stderr"),
            ("MCP_AUDIT_LOG_ARGUMENTS", "true"),
            ("MCP_RATE_LIMIT", "100000/min"),
            ("MCP_RATE_BURST", "100000"),
        ],
        Some(log.clone()),
    )
    .await;
    let http = client_trusting(&fx.ca_pem);
    let secrets = [
        "alice-header-secret-4f1c9a",
        "bob-header-secret-77d20e",
        "alice-header-secret-rotated-b83e",
    ];
    let arg = json!({"name": "STATE_TOKEN"});
    let call = |key: &'static str, value: Option<&'static str>| {
        let http = http.clone();
        let arg = arg.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                value.map(|v| ("x-state-token", v)).into_iter().collect();
            call_with_headers(&http, port, key, &headers, "env_digest", arg).await
        }
    };
    let pid = |key: &'static str, value: &'static str| {
        let http = http.clone();
        async move {
            call_with_headers(
                &http,
                port,
                key,
                &[("x-state-token", value)],
                "pid",
                json!({}),
            )
            .await
        }
    };

    assert_eq!(
        call(ALICE_KEY, Some(secrets[0])).await,
        sha256_hex(secrets[0])
    );
    assert_eq!(
        call(BOB_KEY, Some(secrets[1])).await,
        sha256_hex(secrets[1])
    );
    assert_eq!(
        call(ALICE_KEY, Some(secrets[0])).await,
        sha256_hex(secrets[0]),
        "bob's header never reached alice's child"
    );
    // Required and header-only: a request without it gets the error, not a child.
    let missing = call(CAROL_KEY, None).await;
    assert!(
        missing.contains("STATE_TOKEN")
            && missing.contains("x-state-token")
            && missing.contains(CONTACT),
        "{missing}"
    );
    let missing = call(ALICE_KEY, None).await;
    assert!(missing.contains("STATE_TOKEN"), "{missing}");

    // Another value: alice's child is replaced at her next call.
    let before = pid(ALICE_KEY, secrets[0]).await;
    assert_eq!(
        call(ALICE_KEY, Some(secrets[2])).await,
        sha256_hex(secrets[2])
    );
    let after = pid(ALICE_KEY, secrets[2]).await;
    assert_ne!(before, after, "a new child for the new credential");
    assert_eq!(
        call(BOB_KEY, Some(secrets[1])).await,
        sha256_hex(secrets[1])
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().await.unwrap();
    let text = log.lock().unwrap().clone();
    assert!(
        text.contains("\"principal\":\"alice\""),
        "the log and audit ran"
    );
    assert!(text.contains("env_digest"), "the audit recorded the calls");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} reached the log");
    }
}

#[tokio::test]
async fn an_http_upstream_gets_each_principals_credential_as_a_header() {
    // The upstream: a second edge that knows each person by their own upstream key.
    let keys_dir = tempfile::tempdir().unwrap();
    let upstream_keys = keys_dir.path().join("keys");
    std::fs::write(
        &upstream_keys,
        "alice-upstream alice-upstream-key-0123456789\nbob-upstream bob-upstream-key-0123456789\n",
    )
    .unwrap();
    let keys_path = upstream_keys.display().to_string();
    let upstream = Edge::start_with(move |env| {
        env.insert("MCP_API_KEYS_FILE".into(), keys_path);
    })
    .await;
    let secrets = tempfile::tempdir().unwrap();
    put(
        secrets.path(),
        "alice",
        "UPSTREAM_AUTH",
        "Bearer alice-upstream-key-0123456789",
    );
    put(
        secrets.path(),
        "bob",
        "UPSTREAM_AUTH",
        "Bearer bob-upstream-key-0123456789",
    );
    let toml = format!(
        "[[backends]]\nname = \"remote\"\nurl = \"{}\"\nca_file = \"{}\"\n\
         [backends.credentials]\ndir = \"{}\"\nnames = [\"UPSTREAM_AUTH\"]\n\
         headers = {{ Authorization = \"UPSTREAM_AUTH\" }}\ncontact = \"{CONTACT}\"\n",
        upstream.url(),
        upstream.fx.ca_path.display(),
        secrets.path().display()
    );
    let (edge, _dir) = edge(&toml, "").await;
    let sessions = &upstream.running.state().sessions;
    assert!(
        sessions.is_empty(),
        "no upstream session without a principal"
    );

    let search = json!({"query": "TLS"});
    let alice = edge
        .stateless_text(ALICE_KEY, "search_docs", search.clone())
        .await;
    assert!(alice.contains("tls.md"), "{alice}");
    assert_eq!(sessions.sessions_of("alice-upstream").len(), 1);
    assert!(sessions.sessions_of("bob-upstream").is_empty());
    let bob = session_client(&edge, BOB_KEY).await;
    assert_eq!(
        sessions.sessions_of("bob-upstream").len(),
        1,
        "bob's own upstream identity"
    );
    bob.cancel().await.unwrap();

    let carol = edge.stateless_text(CAROL_KEY, "search_docs", search).await;
    assert!(
        carol.contains("UPSTREAM_AUTH") && carol.contains(CONTACT),
        "{carol}"
    );
    edge.running.shutdown().await;
    upstream.running.shutdown().await;
}

#[tokio::test]
async fn credentials_on_a_backend_everybody_shares_are_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[tls]\nmode = \"off\"\n[auth]\nmode = \"none\"\n[server]\nhost = \"127.0.0.1\"\n\
         [[backends]]\nname = \"shared\"\ncommand = [\"python3\"]\nshare = \"all\"\n\
         [backends.credentials]\nfrom_header = { \"x-token\" = \"TOKEN\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("check-config")
        .env_clear()
        .env("MCP_EDGE_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("backends[0].credentials"), "{stderr}");
    assert!(stderr.contains("share = \"all\""), "{stderr}");
}

#[tokio::test]
async fn a_principals_one_child_with_share_principal_gets_that_principals_credential() {
    let secrets = tempfile::tempdir().unwrap();
    put(secrets.path(), "alice", "STATE_TOKEN", "alice-token");
    put(secrets.path(), "bob", "STATE_TOKEN", "bob-token");
    let toml = stateful(&format!(
        "share = \"principal\"\n[backends.credentials]\ndir = \"{}\"\nnames = [\"STATE_TOKEN\"]\n",
        secrets.path().display()
    ));
    let (edge, _dir) = edge(&toml, "").await;
    let token = json!({"name": "STATE_TOKEN"});
    let alice_session = session_client(&edge, ALICE_KEY).await;
    let alice = stateless_client(&edge, ALICE_KEY).await;
    let bob_session = session_client(&edge, BOB_KEY).await;
    // Alice's session and stateless calls share her one child, with her credential.
    let pid = call_text(&alice_session, "pid", json!({})).await;
    assert_eq!(call_text(&alice, "pid", json!({})).await, pid);
    assert_eq!(
        call_text(&alice_session, "env", token.clone()).await,
        "alice-token"
    );
    assert_eq!(call_text(&alice, "env", token.clone()).await, "alice-token");
    assert_eq!(
        call_text(&bob_session, "env", token.clone()).await,
        "bob-token"
    );
    assert_ne!(call_text(&bob_session, "pid", json!({})).await, pid);
    edge.running.shutdown().await;
}
