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
