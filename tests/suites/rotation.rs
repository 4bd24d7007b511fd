//! Secret files rotated under a running server: API keys, JWT keys, TLS certificates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::common::*;

fn search() -> CallToolRequestParams {
    CallToolRequestParams::new("search_docs")
        .with_arguments(json!({"query": "tls"}).as_object().unwrap().clone())
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failures: Vec<Instant>,
}

/// One client calling a tool in a loop until told to stop.
async fn load_loop(
    edge: &Edge,
    key: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Tally> {
    let client = edge.mcp(key).await;
    tokio::spawn(async move {
        let mut tally = Tally::default();
        while !stop.load(Ordering::Relaxed) {
            match client.call_tool(search()).await {
                Ok(r) if r.is_error != Some(true) => tally.ok += 1,
                other => {
                    if std::env::var("ROTATION_DEBUG").is_ok() {
                        eprintln!("failure: {other:?}");
                    }
                    tally.failures.push(Instant::now());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        tally
    })
}

fn keys_line(name: &str, key: &str) -> String {
    format!("{name} {key}\n")
}

#[tokio::test]
async fn keys_rotate_under_load_without_failing_valid_keys() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_RATE_LIMIT".into(), "100000/s".into());
        env.insert("MCP_RATE_BURST".into(), "100000".into());
        // Probing for the new and removed keys fails auth from this IP on purpose;
        // the per-IP lockout (tested elsewhere) must not stop the load clients.
        env.insert("MCP_FAILED_AUTH_BURST".into(), "1000".into());
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let alice = load_loop(&edge, ALICE_KEY, stop.clone()).await;
    let bob = load_loop(&edge, BOB_KEY, stop.clone()).await;
    let carol = load_loop(&edge, CAROL_KEY, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Add a key with an in-place write (what a Compose single-file secret sees).
    const DAVE_KEY: &str = "dave-key-0123456789abcdef";
    let all = format!(
        "{}{}{}{}",
        keys_line("alice", ALICE_KEY),
        keys_line("bob", BOB_KEY),
        keys_line("carol", CAROL_KEY),
        keys_line("dave", DAVE_KEY)
    );
    std::fs::write(&edge.fx.keys_path, &all).unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || edge
            .initialize(DAVE_KEY)
            .await
            .status()
            == 200)
        .await,
        "a new key works within 2 s"
    );

    // Remove carol's key: her next requests fail and her session dies.
    let without_carol = format!(
        "{}{}{}",
        keys_line("alice", ALICE_KEY),
        keys_line("bob", BOB_KEY),
        keys_line("dave", DAVE_KEY)
    );
    let removed_at = Instant::now();
    std::fs::write(&edge.fx.keys_path, &without_carol).unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || edge
            .initialize(CAROL_KEY)
            .await
            .status()
            == 401)
        .await,
        "a removed key is refused within 2 s"
    );
    assert!(
        eventually(Duration::from_secs(2), async || edge
            .running
            .state()
            .sessions
            .sessions_of("carol")
            .is_empty())
        .await,
        "the revoked key's sessions are closed"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let alice = alice.await.unwrap();
    let bob = bob.await.unwrap();
    let carol = carol.await.unwrap();
    assert!(
        alice.ok > 10 && bob.ok > 10,
        "load ran: alice {} bob {}",
        alice.ok,
        bob.ok
    );
    assert!(
        alice.failures.is_empty(),
        "alice saw {} failures",
        alice.failures.len()
    );
    assert!(
        bob.failures.is_empty(),
        "bob saw {} failures",
        bob.failures.len()
    );
    let first_refusal = carol.failures.first().expect("carol was refused");
    assert!(
        first_refusal.duration_since(removed_at) < Duration::from_secs(2),
        "carol refused {:?} after removal",
        first_refusal.duration_since(removed_at)
    );
}

#[tokio::test]
async fn kubernetes_data_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let fx = Fixture::new();
    let mount = fx.dir.path().join("k8s-secret");
    std::fs::create_dir_all(mount.join("..2026_11_24_v1")).unwrap();
    std::fs::write(
        mount.join("..2026_11_24_v1/api_keys"),
        keys_line("alice", ALICE_KEY),
    )
    .unwrap();
    symlink("..2026_11_24_v1", mount.join("..data")).unwrap();
    symlink("..data/api_keys", mount.join("api_keys")).unwrap();
    let mut env = fx.env();
    env.insert(
        "MCP_API_KEYS_FILE".into(),
        mount.join("api_keys").display().to_string(),
    );
    let edge = Edge {
        running: mcp_edge::app::start(load(&env)).await.unwrap(),
        fx,
    };
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 200);
    assert_eq!(edge.initialize(BOB_KEY).await.status(), 401);

    // What the kubelet does: new timestamped dir, new ..data link renamed over the old.
    std::fs::create_dir_all(mount.join("..2026_11_24_v2")).unwrap();
    std::fs::write(
        mount.join("..2026_11_24_v2/api_keys"),
        keys_line("bob", BOB_KEY),
    )
    .unwrap();
    symlink("..2026_11_24_v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_11_24_v1")).unwrap();

    assert!(
        eventually(Duration::from_secs(2), async || edge
            .initialize(BOB_KEY)
            .await
            .status()
            == 200)
        .await,
        "the swapped-in key works within 2 s"
    );
    assert_eq!(edge.initialize(ALICE_KEY).await.status(), 401);
}

#[tokio::test]
async fn broken_keys_files_keep_the_last_good_set() {
    let edge = Edge::start().await;
    let counts = edge.running.secrets().unwrap().counts("api_keys").unwrap();
    for (n, broken) in ["this-is-not-a-keys-file\n", "", "alice short\n"]
        .iter()
        .enumerate()
    {
        std::fs::write(&edge.fx.keys_path, broken).unwrap();
        assert!(
            eventually(Duration::from_secs(3), async || counts
                .failed
                .load(Ordering::Relaxed)
                > n as u64)
            .await,
            "the broken file #{n} was read and refused"
        );
        assert_eq!(
            edge.initialize(ALICE_KEY).await.status(),
            200,
            "last good keys stay in force"
        );
    }
    std::fs::write(&edge.fx.keys_path, keys_line("bob", BOB_KEY)).unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || edge
            .initialize(ALICE_KEY)
            .await
            .status()
            == 401)
        .await
    );
    assert_eq!(edge.initialize(BOB_KEY).await.status(), 200);
}

#[tokio::test]
async fn tls_certificate_swap_is_seen_by_new_handshakes_while_old_connections_continue() {
    let edge = Edge::start().await;
    let health = format!("{}/health", edge.base());
    let old_client = edge.http();
    assert_eq!(old_client.get(&health).send().await.unwrap().status(), 200);

    let (new_ca, new_cert, new_key) = test_pki(&["localhost"]);
    std::fs::write(&edge.fx.cert_path, new_cert).unwrap();
    std::fs::write(&edge.fx.key_path, new_key).unwrap();

    let swapped = eventually(Duration::from_secs(3), async || {
        client_trusting(&new_ca).get(&health).send().await.is_ok()
    })
    .await;
    assert!(swapped, "a new handshake sees the new certificate");
    assert!(
        client_trusting(&edge.fx.ca_pem)
            .get(&health)
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // The connection made before the swap is still open and still works.
    assert_eq!(old_client.get(&health).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn jwt_key_file_rotation() {
    use crate::common::jwt::*;
    const RESOURCE: &str = "https://mcp.example.test/mcp";
    let fx_dir = tempfile::tempdir().unwrap();
    let secret_file = fx_dir.path().join("jwt_hs");
    std::fs::write(&secret_file, "first-shared-secret-0123456789-abcdef").unwrap();
    let edge = hs256_edge(&secret_file, RESOURCE).await;
    let sign = |secret: &str| hs256_token(secret, RESOURCE, "ana");
    let old = sign("first-shared-secret-0123456789-abcdef");
    let new = sign("second-shared-secret-0123456789-abcdef");
    assert_eq!(edge.initialize(&old).await.status(), 200);
    assert_eq!(edge.initialize(&new).await.status(), 401);
    std::fs::write(&secret_file, "second-shared-secret-0123456789-abcdef").unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || edge
            .initialize(&new)
            .await
            .status()
            == 200)
        .await
    );
    assert_eq!(edge.initialize(&old).await.status(), 401);
}

#[tokio::test]
async fn sighup_forces_a_reload() {
    let fx = Fixture::new();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let (mut child, _port) = spawn_edge(
        &fx,
        &[("MCP_SECRETS_POLL_INTERVAL", "1h")],
        Some(log.clone()),
    )
    .await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let reloaded = eventually(Duration::from_secs(5), async || {
        let text = log.lock().unwrap().clone();
        text.contains("SIGHUP: reloading all secrets")
            && text.matches("secret reloaded").count() >= 2
    })
    .await;
    assert!(
        reloaded,
        "SIGHUP reloads the keys and the certificate:\n{}",
        log.lock().unwrap()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the server"
    );
    child.kill().await.unwrap();
}
