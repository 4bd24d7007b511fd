//! Rate budgets: calls apart from protocol traffic, and (with a real Redis) limits
//! and session caps shared by replicas, with the fallback while Redis is away.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::redis::Redis;
use crate::common::{ALICE_KEY, BOB_KEY, CAROL_KEY, Edge, eventually, metrics_text};

const PING: &str = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;

async fn ping(edge: &Edge, key: &str, session: &str) -> u16 {
    edge.post(Some(key))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(PING)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What a client such as mcp-remote sends when it starts and stops, besides its calls.
async fn start_up_and_close(edge: &Edge, key: &str) {
    let id = edge.session(key).await;
    let stream = edge
        .http()
        .get(edge.url())
        .bearer_auth(key)
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-06-18")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200, "GET stream");
    drop(stream);
    let closed = edge
        .http()
        .delete(edge.url())
        .bearer_auth(key)
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "DELETE: {}", closed.status());
}

#[tokio::test]
async fn client_start_ups_do_not_spend_the_call_budget() {
    // carol's keys-file line says burst=3; 16 rapid client launches used to exhaust it.
    let edge = Edge::start().await;
    for _ in 0..16 {
        start_up_and_close(&edge, CAROL_KEY).await;
    }
    let id = edge.session(CAROL_KEY).await;
    for _ in 0..3 {
        let r = edge.list_tools(CAROL_KEY, &id).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(edge.list_tools(CAROL_KEY, &id).await.status(), 429);
}

#[tokio::test]
async fn protocol_traffic_has_its_own_bound() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_PROTOCOL_RATE".into(), "1/hour".into());
        env.insert("MCP_PROTOCOL_BURST".into(), "5".into());
    })
    .await;
    // initialize + notifications/initialized + 3 pings = 5.
    let id = edge.session(ALICE_KEY).await;
    for _ in 0..3 {
        assert_eq!(ping(&edge, ALICE_KEY, &id).await, 200);
    }
    assert_eq!(ping(&edge, ALICE_KEY, &id).await, 429);
    // Calls are counted apart and still pass; another principal is unaffected.
    assert_eq!(edge.list_tools(ALICE_KEY, &id).await.status(), 200);
    let bob = edge.session(BOB_KEY).await;
    assert_eq!(ping(&edge, BOB_KEY, &bob).await, 200);
}

/// Two replicas (in this process) sharing `redis`.
async fn replicas(redis: &Redis, extra: &[(&str, &str)]) -> (Edge, Edge) {
    let env = |env: &mut HashMap<String, String>| {
        env.insert("MCP_RATE_LIMIT_STORE".into(), "redis".into());
        env.insert("MCP_REDIS_URL".into(), redis.url());
        env.insert("MCP_REPLICAS".into(), "2".into());
        // Generous: a loaded test machine must not look like Redis being away.
        env.insert("MCP_REDIS_TIMEOUT".into(), "2s".into());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
    };
    (Edge::start_with(env).await, Edge::start_with(env).await)
}

async fn metric(edge: &Edge, name: &str) -> f64 {
    let admin = edge.running.admin_addr().expect("admin listener");
    let text = metrics_text(admin).await;
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn with_redis_the_budget_and_the_lockout_are_global() {
    let redis = Redis::start_with_password(Some("s3cret-redis"));
    let dir = tempfile::tempdir().unwrap();
    let password = redis.password_file(dir.path());
    let password = password.display().to_string();
    let (a, b) = replicas(
        &redis,
        &[
            ("MCP_REDIS_PASSWORD_FILE", &password),
            ("MCP_FAILED_AUTH_BURST", "2"),
            ("MCP_FAILED_AUTH_RATE", "1/hour"),
        ],
    )
    .await;
    // carol's burst of 3 holds across both replicas, not 3 on each.
    let on_a = a.session(CAROL_KEY).await;
    let on_b = b.session(CAROL_KEY).await;
    assert_eq!(a.list_tools(CAROL_KEY, &on_a).await.status(), 200);
    assert_eq!(b.list_tools(CAROL_KEY, &on_b).await.status(), 200);
    assert_eq!(a.list_tools(CAROL_KEY, &on_a).await.status(), 200);
    let refused = b.list_tools(CAROL_KEY, &on_b).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(a.list_tools(CAROL_KEY, &on_a).await.status(), 429);
    // Another principal has its own budget.
    let alice = b.session(ALICE_KEY).await;
    assert_eq!(b.list_tools(ALICE_KEY, &alice).await.status(), 200);

    // Two wrong keys on replica A lock the address out on replica B too.
    for _ in 0..2 {
        assert_eq!(a.initialize("wrong-key").await.status(), 401);
    }
    assert_eq!(b.initialize("wrong-key").await.status(), 429);
    assert_eq!(b.initialize(BOB_KEY).await.status(), 429);
    assert!(redis.cli(&["DBSIZE"]).is_some_and(|n| n.trim() != "0"));
}

/// Scripts Redis ran (EVALSHA and EVAL), from `INFO commandstats`.
fn scripts_run(redis: &Redis) -> u64 {
    let info = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn with_redis_a_large_budget_is_leased_a_few_tokens_at_a_time_and_never_exceeded() {
    let redis = Redis::start();
    // 40 calls, no refill within the test; over 2 replicas each decision may take
    // 40 / (4 * 2) = 5 tokens.
    let (a, b) = replicas(
        &redis,
        &[("MCP_RATE_LIMIT", "40/hour"), ("MCP_RATE_BURST", "40")],
    )
    .await;
    let on_a = a.session(ALICE_KEY).await;
    let on_b = b.session(ALICE_KEY).await;
    let before = scripts_run(&redis);
    let mut allowed = 0;
    for _ in 0..30 {
        if a.list_tools(ALICE_KEY, &on_a).await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 30,
        "a large budget is not refused early on one replica"
    );
    let round_trips = scripts_run(&redis) - before;
    assert!(
        round_trips <= 6,
        "30 calls took {round_trips} Redis decisions"
    );
    // Both replicas now: never more than the budget in total, and at most the
    // other replica's unused lease short of it.
    for _ in 0..20 {
        for (edge, session) in [(&a, &on_a), (&b, &on_b)] {
            if edge.list_tools(ALICE_KEY, session).await.status() == 200 {
                allowed += 1;
            }
        }
    }
    assert!(
        (32..=40).contains(&allowed),
        "allowed {allowed} of a budget of 40"
    );
}

#[tokio::test]
async fn with_redis_down_each_replica_applies_its_share_then_returns_to_redis() {
    let mut redis = Redis::start();
    // alice: 4 calls at once, 1 per 15 s; each of 2 replicas gets 2 while Redis is away.
    let (a, b) = replicas(
        &redis,
        &[("MCP_RATE_LIMIT", "4/min"), ("MCP_RATE_BURST", "4")],
    )
    .await;
    let on_a = a.session(ALICE_KEY).await;
    let on_b = b.session(ALICE_KEY).await;
    redis.stop();
    for _ in 0..2 {
        assert_eq!(a.list_tools(ALICE_KEY, &on_a).await.status(), 200);
    }
    assert_eq!(a.list_tools(ALICE_KEY, &on_a).await.status(), 429);
    for _ in 0..2 {
        assert_eq!(b.list_tools(ALICE_KEY, &on_b).await.status(), 200);
    }
    assert_eq!(b.list_tools(ALICE_KEY, &on_b).await.status(), 429);
    // (The registry is per process, so other tests' replicas count here too.)
    assert!(metric(&a, "mcp_edge_redis_fallback_decisions").await >= 3.0);
    // Session set-up works while Redis is away.
    let bob_a = a.session(BOB_KEY).await;
    let alice_b = b.session(ALICE_KEY).await;

    // Redis is back (empty): once each replica has probed it again (a ping from
    // each, under different principals, lands there), they share one budget.
    redis.restart();
    assert!(
        eventually(Duration::from_secs(20), async || {
            ping(&a, BOB_KEY, &bob_a).await;
            ping(&b, ALICE_KEY, &alice_b).await;
            redis.cli(&["DBSIZE"]).is_some_and(|n| n.trim() == "2")
        })
        .await,
        "both replicas return to Redis"
    );
    let carol_a = a.session(CAROL_KEY).await;
    let carol_b = b.session(CAROL_KEY).await;
    let statuses = [
        a.list_tools(CAROL_KEY, &carol_a).await.status(),
        b.list_tools(CAROL_KEY, &carol_b).await.status(),
        a.list_tools(CAROL_KEY, &carol_a).await.status(),
        b.list_tools(CAROL_KEY, &carol_b).await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 200, 429]);
}

#[tokio::test]
async fn with_redis_down_and_deny_calls_get_503_and_guessing_stays_throttled() {
    let mut redis = Redis::start();
    let (a, _b) = replicas(
        &redis,
        &[
            ("MCP_REDIS_UNAVAILABLE", "deny"),
            ("MCP_FAILED_AUTH_BURST", "2"),
            ("MCP_FAILED_AUTH_RATE", "1/hour"),
        ],
    )
    .await;
    let id = a.session(ALICE_KEY).await;
    redis.stop();
    let refused = a.list_tools(ALICE_KEY, &id).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    // The failed-auth throttle does not turn off while Redis is away: this replica's
    // share of 2 over 2 replicas is 1.
    assert_eq!(a.initialize("wrong-key").await.status(), 401);
    assert_eq!(a.initialize("wrong-key").await.status(), 429);
}

#[tokio::test]
async fn with_redis_the_per_principal_session_cap_is_global() {
    let redis = Redis::start();
    let (a, b) = replicas(&redis, &[("MCP_MAX_SESSIONS_PER_PRINCIPAL", "2")]).await;
    let first = a.session(ALICE_KEY).await;
    b.session(ALICE_KEY).await;
    assert_eq!(a.initialize(ALICE_KEY).await.status(), 429);
    assert_eq!(b.initialize(ALICE_KEY).await.status(), 429);
    // Closing a session frees its place for either replica.
    let closed = a
        .http()
        .delete(a.url())
        .bearer_auth(ALICE_KEY)
        .header("mcp-session-id", &first)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success());
    assert_eq!(b.initialize(ALICE_KEY).await.status(), 200);
}

#[test]
fn check_config_verifies_the_redis_settings() {
    use std::process::Command;
    let fx = crate::common::Fixture::new();
    let password = fx.dir.path().join("redis_password");
    std::fs::write(&password, "pw-not-to-be-printed\n").unwrap();
    let check = |extra: &[(&str, &str)]| {
        let out = Command::new(crate::common::bin())
            .arg("check-config")
            .env_clear()
            .envs(fx.env())
            .env("MCP_RATE_LIMIT_STORE", "redis")
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let pw = password.to_str().unwrap();
    let (code, err) = check(&[
        ("MCP_REDIS_URL", "rediss://redis.internal:6380/0"),
        ("MCP_REDIS_PASSWORD_FILE", pw),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("redis: rediss://redis.internal:6380/0"),
        "{err}"
    );
    assert!(!err.contains("pw-not-to-be-printed"), "{err}");
    // store = "redis" without a URL, a bad URL, a missing password file: each named.
    let (code, err) = check(&[]);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("rate_limit.store") && err.contains("MCP_REDIS_URL"),
        "{err}"
    );
    let (code, err) = check(&[("MCP_REDIS_URL", "http://redis:6379")]);
    assert_eq!(code, Some(64));
    assert!(err.contains("redis.url"), "{err}");
    let (code, err) = check(&[
        ("MCP_REDIS_URL", "redis://redis:6379"),
        ("MCP_REDIS_PASSWORD_FILE", "/nonexistent/redis_password"),
    ]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("redis.password_file") && err.contains("/nonexistent/redis_password"),
        "{err}"
    );
}
