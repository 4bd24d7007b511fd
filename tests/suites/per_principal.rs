//! Backends per person: stateless (2026-07-28) calls of different principals never
//! reach the same child process unless the backend says it keeps no state
//! (`share = "all"`); the child cap stops the least recently used principal's child,
//! never one with a call in flight; idle ones are reaped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use super::backends::edge_with_config;
use crate::common::*;

pub(super) const DAVE_KEY: &str = "dave-key-0123456789abcdef";

/// A `[[backends]]` entry for the stateful test server, with `extra` lines.
pub(super) fn stateful(extra: &str) -> String {
    format!(
        "[[backends]]\nname = \"state\"\ncommand = [\"python3\", \"{}/tests/python/stateful_server.py\"]\n{extra}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The edge with `toml`, and keys for alice, bob, carol and dave (no per-key limits).
pub(super) async fn edge(
    toml: &str,
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> (Edge, tempfile::TempDir) {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        keys.path(),
        format!("alice {ALICE_KEY}\nbob {BOB_KEY}\ncarol {CAROL_KEY}\ndave {DAVE_KEY}\n"),
    )
    .unwrap();
    let (keys_file, keys_path) = keys.keep().unwrap();
    drop(keys_file);
    let keys_text = keys_path.display().to_string();
    edge_with_config(toml, move |env| {
        env.insert("MCP_API_KEYS_FILE".into(), keys_text);
        // Many quick calls per principal: the rate limit is not what is tested here.
        env.insert("MCP_RATE_LIMIT".into(), "100000/min".into());
        env.insert("MCP_RATE_BURST".into(), "100000".into());
        customize(env);
    })
    .await
}

/// An rmcp client in 2026-07-28 (stateless) mode with `key`.
pub(super) async fn stateless_client(
    edge: &Edge,
    key: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::with_client(
        edge.http(),
        StreamableHttpClientTransportConfig::with_uri(edge.url()).auth_header(key),
    );
    ClientConfig::default()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("stateless client connects")
}

pub(super) async fn call_text(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
    name: &'static str,
    arguments: Value,
) -> String {
    let r = client
        .call_tool(
            CallToolRequestParams::new(name).with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    r.content[0].as_text().unwrap().text.clone()
}

#[tokio::test]
async fn stateless_principals_never_share_a_child() {
    let (edge, _dir) = edge(&stateful(""), |_| {}).await;
    let alice = stateless_client(&edge, ALICE_KEY).await;
    let bob = stateless_client(&edge, BOB_KEY).await;
    assert_eq!(
        call_text(&alice, "remember", json!({"note": "alice-secret-plan"})).await,
        "kept"
    );
    // Bob asks a few times (a shared pool would hand him alice's child in turn).
    for _ in 0..6 {
        assert_eq!(call_text(&bob, "recall", json!({})).await, "note=");
    }
    assert_eq!(
        call_text(&alice, "recall", json!({})).await,
        "note=alice-secret-plan",
        "a principal's own calls keep reaching its own child"
    );

    // Interleaved and concurrent: each always sees only its own note.
    let mut tasks = Vec::new();
    for (key, who) in [(ALICE_KEY, "alice"), (BOB_KEY, "bob"), (CAROL_KEY, "carol")] {
        let client = stateless_client(&edge, key).await;
        tasks.push(tokio::spawn(async move {
            let mut pids = std::collections::BTreeSet::new();
            for i in 0..15 {
                let note = format!("{who}-{i}");
                assert_eq!(
                    call_text(&client, "remember", json!({"note": note})).await,
                    "kept"
                );
                let seen = call_text(&client, "recall", json!({})).await;
                assert_eq!(seen, format!("note={note}"), "{who} saw another's state");
                pids.insert(call_text(&client, "pid", json!({})).await);
            }
            pids
        }));
    }
    let mut all_pids = Vec::new();
    for t in tasks {
        let pids = t.await.unwrap();
        assert_eq!(pids.len(), 1, "one child per principal: {pids:?}");
        all_pids.extend(pids);
    }
    all_pids.sort();
    all_pids.dedup();
    assert_eq!(all_pids.len(), 3, "three principals, three children");

    // Progress of one principal's call reaches only its caller, by raw HTTP as curl
    // would send it, both principals at once.
    let (a, b) = tokio::join!(
        edge.stateless(
            &edge.http(),
            ALICE_KEY,
            &stateless_call(7, "progress", json!({}), true)
        )
        .send(),
        edge.stateless(
            &edge.http(),
            BOB_KEY,
            &stateless_call(8, "progress", json!({}), true)
        )
        .send(),
    );
    for (r, token, other) in [(a.unwrap(), "p7", "p8"), (b.unwrap(), "p8", "p7")] {
        let text = r.text().await.unwrap();
        let msgs = messages(&text);
        assert!(
            msgs.iter().any(|m| m["method"] == "notifications/progress"
                && m["params"]["progressToken"] == token),
            "{text}"
        );
        assert!(!text.contains(other), "{text}");
    }
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
    edge.running.shutdown().await;
}

#[tokio::test]
async fn a_backend_declared_stateless_keeps_one_shared_pool() {
    let (edge, _dir) = edge(&stateful("share = \"all\"\n"), |env| {
        env.insert("MCP_POOL_SIZE".into(), "1".into());
    })
    .await;
    assert_eq!(
        edge.stateless_text(ALICE_KEY, "remember", json!({"note": "for everyone"}))
            .await,
        "kept"
    );
    assert_eq!(
        edge.stateless_text(BOB_KEY, "recall", json!({})).await,
        "note=for everyone",
        "share = \"all\": one pool, as documented"
    );
    let live = edge.running.backend().live_children().unwrap();
    assert_eq!(live.load(Ordering::Relaxed), 1);
    edge.running.shutdown().await;
}

#[tokio::test]
async fn at_the_child_cap_the_least_recently_used_idle_principal_makes_room() {
    let (edge, _dir) = edge(&stateful(""), |env| {
        env.insert("MCP_MAX_CHILDREN".into(), "2".into());
        env.insert("MCP_KILL_GRACE".into(), "1s".into());
    })
    .await;
    let live = edge.running.backend().live_children().unwrap();
    // The start-up probe's child serves nobody and is gone.
    assert!(
        eventually(Duration::from_secs(5), async || live
            .load(Ordering::Relaxed)
            == 0)
        .await
    );

    // Alice's call is in flight the whole time, and her child is the oldest.
    let slow = {
        let http = edge.http();
        let body = stateless_call(1, "slow_stream", json!({"seconds": 4}), false);
        let request = edge.stateless(&http, ALICE_KEY, &body);
        tokio::spawn(async move { request.send().await.unwrap().text().await.unwrap() })
    };
    assert!(
        eventually(Duration::from_secs(10), async || live
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(
        edge.stateless_text(BOB_KEY, "remember", json!({"note": "bob's"}))
            .await,
        "kept"
    );
    let bob_pid = edge.stateless_text(BOB_KEY, "pid", json!({})).await;
    assert_eq!(live.load(Ordering::Relaxed), 2);

    // Carol needs a child: bob's (idle) is stopped, never alice's (in flight).
    assert_eq!(
        edge.stateless_text(CAROL_KEY, "recall", json!({})).await,
        "note="
    );
    assert!(live.load(Ordering::Relaxed) <= 2);
    let answer = slow.await.unwrap();
    assert!(
        answer.contains("slow done"),
        "alice's call was not cut: {answer}"
    );

    // Both children busy: dave is told plainly, and nobody's call is cut.
    let busy = |key: &'static str, id| {
        let http = edge.http();
        let body = stateless_call(id, "slow_stream", json!({"seconds": 3}), false);
        let request = edge.stateless(&http, key, &body);
        tokio::spawn(async move { request.send().await.unwrap().text().await.unwrap() })
    };
    let (a, c) = (busy(ALICE_KEY, 2), busy(CAROL_KEY, 3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = edge.stateless_text(DAVE_KEY, "recall", json!({})).await;
    assert!(refused.contains("proxy.max_children"), "{refused}");
    assert!(a.await.unwrap().contains("slow done"));
    assert!(c.await.unwrap().contains("slow done"));

    // Bob comes back to a new child: his state went with the one stopped.
    assert_eq!(
        edge.stateless_text(BOB_KEY, "recall", json!({})).await,
        "note="
    );
    assert_ne!(
        edge.stateless_text(BOB_KEY, "pid", json!({})).await,
        bob_pid
    );
    edge.running.shutdown().await;
}

#[tokio::test]
async fn idle_principal_children_are_reaped() {
    let (edge, _dir) = edge(&stateful(""), |env| {
        env.insert("MCP_POOL_IDLE_TIMEOUT".into(), "1s".into());
        env.insert("MCP_KILL_GRACE".into(), "1s".into());
    })
    .await;
    let live = edge.running.backend().live_children().unwrap();
    assert_eq!(
        edge.stateless_text(ALICE_KEY, "remember", json!({"note": "x"}))
            .await,
        "kept"
    );
    assert_eq!(
        edge.stateless_text(BOB_KEY, "recall", json!({})).await,
        "note="
    );
    assert!(
        eventually(Duration::from_secs(10), async || live
            .load(Ordering::Relaxed)
            == 0)
        .await,
        "idle children stopped"
    );
    assert_eq!(
        edge.stateless_text(ALICE_KEY, "recall", json!({})).await,
        "note=",
        "a reaped child's state is gone"
    );
    edge.running.shutdown().await;
}

/// What a session client heard from the edge outside its calls' answers.
#[derive(Clone, Default)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[allow(deprecated)] // logging is SEP-2577-deprecated, still what the test server sends
impl rmcp::ClientHandler for Heard {
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.lock().unwrap().push(params.data.to_string());
    }
}

impl Heard {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// An rmcp client in session mode with `key`, recording the log messages it hears.
async fn session_client(
    edge: &Edge,
    key: &str,
) -> (
    rmcp::service::RunningService<rmcp::RoleClient, Heard>,
    Heard,
) {
    use rmcp::ServiceExt;
    let transport = StreamableHttpClientTransport::with_client(
        edge.http(),
        StreamableHttpClientTransportConfig::with_uri(edge.url()).auth_header(key),
    );
    let heard = Heard::default();
    let client = heard
        .clone()
        .serve(transport)
        .await
        .expect("session client");
    (client, heard)
}

async fn session_call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, Heard>,
    name: &'static str,
    arguments: Value,
) -> String {
    let r = client
        .call_tool(
            CallToolRequestParams::new(name).with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    r.content[0].as_text().unwrap().text.clone()
}

/// A `tools/call` within session `session`, by hand (so the JSON-RPC id is ours),
/// asking for progress with token `p<id>`; the whole answer body.
async fn session_call_raw(edge: &Edge, key: &str, session: &str, id: u64, name: &str) -> String {
    let mut body = stateless_call(id, name, json!({"seconds": 1}), true);
    body["params"]["_meta"] = json!({"progressToken": format!("p{id}")});
    edge.rpc(key, session, &body).await.text().await.unwrap()
}

#[tokio::test]
async fn share_principal_serves_a_persons_sessions_and_stateless_calls_from_one_child() {
    let (edge, _dir) = edge(&stateful("share = \"principal\"\n"), |env| {
        env.insert("MCP_POOL_IDLE_TIMEOUT".into(), "1s".into());
        env.insert("MCP_KILL_GRACE".into(), "1s".into());
    })
    .await;
    let live = edge.running.backend().live_children().unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || live
            .load(Ordering::Relaxed)
            == 0)
        .await,
        "the probe's child serves nobody"
    );
    let (alice1, heard1) = session_client(&edge, ALICE_KEY).await;
    let (alice2, heard2) = session_client(&edge, ALICE_KEY).await;
    let (bob, heard_bob) = session_client(&edge, BOB_KEY).await;
    let alice_stateless = stateless_client(&edge, ALICE_KEY).await;

    // One child for all of alice's sessions and stateless calls; bob has his own.
    let pid = session_call(&alice1, "pid", json!({})).await;
    assert_eq!(session_call(&alice2, "pid", json!({})).await, pid);
    assert_eq!(call_text(&alice_stateless, "pid", json!({})).await, pid);
    assert_ne!(session_call(&bob, "pid", json!({})).await, pid);
    assert_eq!(live.load(Ordering::Relaxed), 2, "two people, two children");

    // Her sessions share her state; bob never sees it.
    assert_eq!(
        session_call(&alice1, "remember", json!({"note": "alice-shared"})).await,
        "kept"
    );
    assert_eq!(
        session_call(&alice2, "recall", json!({})).await,
        "note=alice-shared"
    );
    assert_eq!(
        call_text(&alice_stateless, "recall", json!({})).await,
        "note=alice-shared"
    );
    assert_eq!(session_call(&bob, "recall", json!({})).await, "note=");

    // The child's own notifications reach her sessions, never bob's.
    assert_eq!(
        session_call(&alice1, "whisper", json!({})).await,
        "whispered"
    );
    let said = "note=alice-shared";
    assert!(
        eventually(Duration::from_secs(5), async || [&heard1, &heard2]
            .iter()
            .all(|h| h.all().iter().any(|m| m.contains(said))))
        .await,
        "{:?} {:?}",
        heard1.all(),
        heard2.all()
    );
    assert_eq!(session_call(&bob, "whisper", json!({})).await, "whispered");
    assert!(
        eventually(Duration::from_secs(5), async || heard_bob
            .all()
            .iter()
            .any(|m| m.contains("note=")))
        .await
    );
    assert!(
        !heard_bob.all().iter().any(|m| m.contains(said)),
        "{:?}",
        heard_bob.all()
    );

    // Two of her sessions send the same JSON-RPC id and progress token at once: the
    // child sees the edge's own ids, and each gets its own answer and progress.
    let s1 = edge.session(ALICE_KEY).await;
    let s2 = edge.session(ALICE_KEY).await;
    let (slow, quick) = tokio::join!(
        session_call_raw(&edge, ALICE_KEY, &s1, 5, "slow_stream"),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            session_call_raw(&edge, ALICE_KEY, &s2, 5, "progress").await
        }
    );
    for (body, answer) in [(&slow, "slow done"), (&quick, "done")] {
        let msgs = messages(body);
        let results: Vec<_> = msgs.iter().filter(|m| m["id"] == 5).collect();
        assert_eq!(results.len(), 1, "{body}");
        assert_eq!(results[0]["result"]["content"][0]["text"], answer, "{body}");
        let progress = msgs
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count();
        assert_eq!(progress, 1, "its own progress only: {body}");
    }
    assert_eq!(live.load(Ordering::Relaxed), 2);

    // While her sessions live, her child is theirs: not reaped when idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(live.load(Ordering::Relaxed), 2);
    assert_eq!(
        session_call(&alice2, "recall", json!({})).await,
        "note=alice-shared"
    );
    // Once they end, it is an idle principal child like any other, and is reaped.
    for s in [&s1, &s2] {
        let _ = edge
            .http()
            .delete(edge.url())
            .bearer_auth(ALICE_KEY)
            .header("mcp-session-id", s.as_str())
            .send()
            .await
            .unwrap();
    }
    alice1.cancel().await.unwrap();
    alice2.cancel().await.unwrap();
    alice_stateless.cancel().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || live
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "alice's child reaped once her sessions ended; bob's stays"
    );
    assert_eq!(session_call(&bob, "recall", json!({})).await, "note=");
    bob.cancel().await.unwrap();
    edge.running.shutdown().await;
}
