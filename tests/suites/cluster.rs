//! Several replicas, one service: three real edges sharing the API keys, the session key
//! ring and a stdio backend config; every request of a session lands on a different one.
#![allow(deprecated)] // sampling (SEP-2577) is still what the backends use

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use mcp_edge::app::{self, Running};
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, CreateMessageRequestParams, CreateMessageResult,
    ProgressNotificationParam, SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse,
};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common::*;

fn manifest(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// N replicas started in this process on port 0, each with a peer listener.
struct Replicas {
    fx: Fixture,
    ring: PathBuf,
    config: PathBuf,
    extra: Vec<(String, String)>,
    edges: Vec<Option<Running>>,
    http: reqwest::Client,
}

impl Replicas {
    async fn start(n: usize, extra: &[(&str, &str)]) -> Replicas {
        let fx = Fixture::new();
        let ring = fx.dir.path().join("run/secrets/session_keys");
        std::fs::write(&ring, format!("# first seals\n{}\n", new_key())).unwrap();
        let config = fx.dir.path().join("edge.toml");
        std::fs::write(
            &config,
            format!(
                "[legacy_sse]\nenabled = true\n[[backends]]\nname = \"py\"\nkind = \"stdio\"\ncommand = [\"python3\", \"{}\"]\n",
                manifest("tests/python/stdio_server.py")
            ),
        )
        .unwrap();
        let http = client_trusting(&fx.ca_pem);
        let mut r = Replicas {
            fx,
            ring,
            config,
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            edges: Vec::new(),
            http,
        };
        for _ in 0..n {
            let edge = r.start_one().await;
            r.edges.push(Some(edge));
        }
        r
    }

    async fn start_one(&self) -> Running {
        let mut env: HashMap<String, String> = self.fx.env();
        env.insert("MCP_PEER_LISTEN".into(), "127.0.0.1:0".into());
        env.insert(
            "MCP_SESSION_KEYS_FILE".into(),
            self.ring.display().to_string(),
        );
        env.insert("MCP_SECRETS_POLL_INTERVAL".into(), "200ms".into());
        env.extend(self.extra.iter().cloned());
        app::start(load_file(Some(self.config.clone()), &env))
            .await
            .expect("replica starts")
    }

    fn edge(&self, i: usize) -> &Running {
        self.edges[i].as_ref().expect("replica running")
    }

    fn url(&self, i: usize) -> String {
        format!("https://localhost:{}/mcp", self.edge(i).addr().port())
    }

    fn base(&self, i: usize) -> String {
        format!("https://localhost:{}", self.edge(i).addr().port())
    }

    fn post(&self, i: usize, key: &str, sid: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .post(self.url(i))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(sid) = sid {
            rb = rb.header("mcp-session-id", sid);
        }
        rb
    }

    /// initialize + notifications/initialized on replica `i`; the sealed session id.
    async fn open(&self, i: usize, key: &str) -> String {
        let init = self
            .post(
                i,
                key,
                None,
                json!({
                    "jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "cluster-test", "version": "1"}}
                }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), 200);
        let sid = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = init.text().await;
        let ack = self
            .post(
                i,
                key,
                Some(&sid),
                json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(ack.status(), 202);
        sid
    }

    /// tools/call on replica `i`: the HTTP status and the JSON-RPC messages.
    async fn call(
        &self,
        i: usize,
        key: &str,
        sid: &str,
        tool: &str,
        args: Value,
    ) -> (u16, Vec<Value>) {
        let r = self
            .post(
                i,
                key,
                Some(sid),
                json!({
                    "jsonrpc":"2.0","id":7,"method":"tools/call",
                    "params":{"name": tool, "arguments": args}
                }),
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, messages(&r.text().await.unwrap()))
    }

    async fn stop(&mut self, i: usize) {
        if let Some(edge) = self.edges[i].take() {
            edge.shutdown().await;
        }
    }

    async fn shutdown(mut self) {
        for i in 0..self.edges.len() {
            self.stop(i).await;
        }
    }
}

fn new_key() -> String {
    mcp_edge::cluster::seal::generate_key().to_string()
}

fn text(msgs: &[Value]) -> String {
    msgs.iter()
        .find(|m| m["id"] == 7)
        .and_then(|m| m["result"]["content"][0]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn python_sdk() {
    crate::suites::backends::python_sdk_installed();
}

#[tokio::test]
async fn a_session_follows_its_owner_from_every_replica() {
    python_sdk();
    let r = Replicas::start(3, &[]).await;
    let sid = r.open(0, ALICE_KEY).await;
    // The stdio child's counter keeps counting whichever replica takes the call.
    for (n, replica) in [1, 2, 0, 1].into_iter().enumerate() {
        let (status, msgs) = r.call(replica, ALICE_KEY, &sid, "count", json!({})).await;
        assert_eq!(status, 200, "replica {replica}: {msgs:?}");
        assert_eq!(
            text(&msgs),
            (n + 1).to_string(),
            "replica {replica}: {msgs:?}"
        );
    }
    // Only the owner holds the session.
    assert_eq!(r.edge(0).state().sessions.len(), 1);
    assert_eq!(r.edge(1).state().sessions.len(), 0);
    // Another principal with the id, and a tampered id: 404 everywhere.
    let mut tampered = sid.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for i in 0..3 {
        let (status, msgs) = r.call(i, BOB_KEY, &sid, "count", json!({})).await;
        assert_eq!(status, 404, "bob on replica {i}");
        assert_eq!(msgs[0]["error"]["code"], -32004);
        let (status, _) = r.call(i, ALICE_KEY, &tampered, "count", json!({})).await;
        assert_eq!(status, 404, "tampered on replica {i}");
        let (status, _) = r
            .call(i, ALICE_KEY, "plain-rmcp-id", "count", json!({}))
            .await;
        assert_eq!(status, 404, "unsealed on replica {i}");
    }
    // DELETE through another replica ends it on the owner.
    let delete = r
        .http
        .delete(r.url(2))
        .bearer_auth(ALICE_KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        delete.status(),
        204,
        "forwarded DELETE answered as the owner does"
    );
    assert_eq!(r.edge(0).state().sessions.len(), 0);
    let (status, _) = r.call(0, ALICE_KEY, &sid, "count", json!({})).await;
    assert_eq!(status, 404);
    r.shutdown().await;
}

/// Sends every request after `initialize` to a replica other than the first.
#[derive(Clone)]
struct Spread {
    inner: reqwest::Client,
    urls: Arc<Vec<Arc<str>>>,
    next: Arc<AtomicUsize>,
    used: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Spread {
    fn pick(&self, session: bool) -> Arc<str> {
        let url = if session {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            self.urls[1 + n % (self.urls.len() - 1)].clone()
        } else {
            self.urls[0].clone()
        };
        self.used.lock().unwrap().push(url.to_string());
        url
    }
}

impl StreamableHttpClient for Spread {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        _uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let uri = self.pick(session_id.is_some());
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn delete_session(
        &self,
        _uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let uri = self.pick(true);
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        _uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        let uri = self.pick(true);
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }
}

/// Answers sampling requests and records progress and list-changed notifications.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<std::sync::Mutex<Vec<f64>>>,
    list_changed: Arc<AtomicUsize>,
}

impl ClientHandler for Recorder {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = serde_json::to_value(&params.messages).unwrap();
        let question = asked[0]["content"]["text"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("42 ({question})")),
            "test-model".into(),
        ))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params.progress);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn progress_sampling_and_the_get_stream_work_through_other_replicas() {
    python_sdk();
    let r = Replicas::start(3, &[]).await;
    let spread = Spread {
        inner: r.http.clone(),
        urls: Arc::new((0..3).map(|i| Arc::from(r.url(i))).collect()),
        next: Arc::new(AtomicUsize::new(0)),
        used: Default::default(),
    };
    let used = spread.used.clone();
    let transport = StreamableHttpClientTransport::with_client(
        spread,
        StreamableHttpClientTransportConfig::with_uri(r.url(0)).auth_header(ALICE_KEY),
    );
    let handler = Recorder::default();
    let client = handler.clone().serve(transport).await.expect("connects");
    let args = |v: Value| v.as_object().unwrap().clone();
    let counted = client
        .call_tool(
            CallToolRequestParams::new("slow_count").with_arguments(args(json!({"steps": 3}))),
        )
        .await
        .unwrap();
    assert!(format!("{counted:?}").contains("counted to 3"));
    assert_eq!(*handler.progress.lock().unwrap(), vec![1.0, 2.0, 3.0]);
    let answer = client
        .call_tool(
            CallToolRequestParams::new("ask_model")
                .with_arguments(args(json!({"question": "life?"}))),
        )
        .await
        .unwrap();
    assert!(
        format!("{answer:?}").contains("model said: 42 (life?)"),
        "{answer:?}"
    );
    // A notification tied to no request travels on the GET stream, opened on B or C.
    client
        .call_tool(CallToolRequestParams::new("announce"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || handler
            .list_changed
            .load(Ordering::Relaxed)
            > 0)
        .await,
        "list_changed reached the client over the forwarded GET stream"
    );
    let used = used.lock().unwrap().clone();
    assert!(used[1..].iter().all(|u| *u != r.url(0)), "{used:?}");
    assert_eq!(r.edge(0).state().sessions.len(), 1, "A owns the session");
    client.cancel().await.unwrap();
    r.shutdown().await;
}

#[tokio::test]
async fn a_get_stream_on_one_replica_carries_another_replicas_session() {
    python_sdk();
    let r = Replicas::start(2, &[]).await;
    let sid = r.open(0, ALICE_KEY).await;
    let stream = r
        .http
        .get(r.url(1))
        .bearer_auth(ALICE_KEY)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let (status, msgs) = r.call(0, ALICE_KEY, &sid, "announce", json!({})).await;
    assert_eq!((status, text(&msgs).as_str()), (200, "announced"));
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        let mut text = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("notifications/resources/list_changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true));
    r.shutdown().await;
}

#[tokio::test]
async fn legacy_sse_messages_reach_the_stream_owner() {
    python_sdk();
    let r = Replicas::start(2, &[]).await;
    let stream = r
        .http
        .get(format!("{}/sse", r.base(0)))
        .bearer_auth(ALICE_KEY)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    let read_until = async |seen: &mut String,
                            body: &mut BoxStream<'_, reqwest::Result<bytes::Bytes>>,
                            want: &str| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !seen.contains(want) {
                match body.next().await {
                    Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                    _ => return,
                }
            }
        })
        .await
        .is_ok()
            && seen.contains(want)
    };
    let mut body: BoxStream<'_, _> = body.by_ref().boxed();
    assert!(read_until(&mut seen, &mut body, "\n\n").await, "{seen}");
    let endpoint = seen
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        !endpoint.contains("sse-"),
        "the handed-out id is sealed: {endpoint}"
    );
    let post = |i: usize, key: &'static str, msg: Value| {
        r.http
            .post(format!("{}{endpoint}", r.base(i)))
            .bearer_auth(key)
            .json(&msg)
            .send()
    };
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    assert_eq!(post(1, BOB_KEY, init.clone()).await.unwrap().status(), 404);
    assert_eq!(post(1, ALICE_KEY, init).await.unwrap().status(), 202);
    assert!(
        read_until(&mut seen, &mut body, "py-test-server").await,
        "{seen}"
    );
    r.shutdown().await;
}

#[tokio::test]
async fn a_stopped_owner_means_404_and_a_new_session_works() {
    python_sdk();
    let mut r = Replicas::start(3, &[]).await;
    let on_a = r.open(0, ALICE_KEY).await;
    let on_b = r.open(1, ALICE_KEY).await;
    r.stop(0).await;
    for i in [1, 2] {
        let (status, msgs) = r.call(i, ALICE_KEY, &on_a, "count", json!({})).await;
        assert_eq!(status, 404, "replica {i}: {msgs:?}");
        assert_eq!(msgs[0]["error"]["code"], -32004);
    }
    let (status, msgs) = r.call(2, ALICE_KEY, &on_b, "count", json!({})).await;
    assert_eq!(
        (status, text(&msgs).as_str()),
        (200, "1"),
        "B's session unaffected"
    );
    let fresh = r.open(2, ALICE_KEY).await;
    let (status, _) = r.call(1, ALICE_KEY, &fresh, "count", json!({})).await;
    assert_eq!(status, 200);
    r.shutdown().await;
}

#[tokio::test]
async fn session_ids_expire() {
    python_sdk();
    let r = Replicas::start(2, &[("MCP_SESSION_ID_TTL", "2s")]).await;
    let sid = r.open(0, ALICE_KEY).await;
    let (status, _) = r.call(1, ALICE_KEY, &sid, "count", json!({})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for i in 0..2 {
        let (status, _) = r.call(i, ALICE_KEY, &sid, "count", json!({})).await;
        assert_eq!(status, 404, "expired id on replica {i}");
    }
    r.shutdown().await;
}

/// A hand-made peer request to `peer` at `time`, signed with `ring`.
fn peer_request(
    http: &reqwest::Client,
    peer: std::net::SocketAddr,
    ring: &mcp_edge::cluster::KeyRing,
    sid: &str,
    time: u64,
) -> reqwest::RequestBuilder {
    use base64::Engine;
    use mcp_edge::cluster::peer::*;
    let body = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"count","arguments":{}}}))
    .unwrap();
    let principal = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"name":"alice","kind":"api_key","credential":"c","limit":null,"tools":null,"scopes":null})
            .to_string(),
    );
    let mut headers = http::HeaderMap::new();
    let set = |headers: &mut http::HeaderMap, k: &'static str, v: &str| {
        headers.insert(k, HeaderValue::from_str(v).unwrap());
    };
    set(&mut headers, "mcp-session-id", sid);
    set(&mut headers, H_PRINCIPAL, &principal);
    set(&mut headers, H_CLIENT, "192.0.2.1");
    set(&mut headers, "x-request-id", "peer-test");
    set(&mut headers, H_TIME, &time.to_string());
    set(&mut headers, "content-type", "application/json");
    set(
        &mut headers,
        "accept",
        "application/json, text/event-stream",
    );
    set(&mut headers, "mcp-protocol-version", "2025-06-18");
    set(&mut headers, "host", "localhost");
    let message = signed_message(&http::Method::POST, "/mcp", &headers, &body);
    set(&mut headers, H_SIG, &ring.sign(&message));
    http.post(format!("http://{peer}/mcp"))
        .headers(headers)
        .body(body)
}

#[tokio::test]
async fn the_peer_listener_takes_only_signed_fresh_requests() {
    python_sdk();
    let r = Replicas::start(1, &[]).await;
    let sid = r.open(0, ALICE_KEY).await;
    let peer = r.edge(0).peer_addr().expect("peer listener");
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ring = mcp_edge::cluster::KeyRing::load_file(&r.ring).unwrap();
    // Correctly signed and fresh: served (proves what the refusals below refuse).
    let ok = peer_request(&plain, peer, &ring, &sid, now)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(text(&messages(&ok.text().await.unwrap())), "1");
    // Replayed with an old timestamp, from the future, or signed with another key.
    for (time, ring, what) in [
        (now - 120, &ring, "old"),
        (now + 120, &ring, "future"),
        (now, &mcp_edge::cluster::KeyRing::random(), "foreign key"),
    ] {
        let refused = peer_request(&plain, peer, ring, &sid, time)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{what}");
    }
    // A signed request whose body was changed on the way.
    let tampered = peer_request(&plain, peer, &ring, &sid, now)
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);
    // A client's own credential is no way in; nor are other paths.
    let with_key = plain
        .post(format!("http://{peer}/mcp"))
        .bearer_auth(ALICE_KEY)
        .header("mcp-session-id", &sid)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 401);
    let body: Value = with_key.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001);
    for path in ["/health", "/metrics", "/sse", "/nope"] {
        let r = plain
            .get(format!("http://{peer}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    r.shutdown().await;
}

#[tokio::test]
async fn rotating_the_key_ring() {
    python_sdk();
    let r = Replicas::start(2, &[]).await;
    let old_key = std::fs::read_to_string(&r.ring).unwrap();
    let old_key = old_key.lines().nth(1).unwrap().to_owned();
    let old_id = r.open(0, ALICE_KEY).await;
    let reloads = |n: u64| {
        let r = &r;
        async move {
            eventually(Duration::from_secs(10), async || {
                (0..r.edges.len()).all(|i| {
                    r.edge(i)
                        .secrets()
                        .and_then(|s| s.counts("session_keys"))
                        .is_some_and(|c| c.ok.load(Ordering::Relaxed) >= n)
                })
            })
            .await
        }
    };
    // A new key first: new ids are sealed with it, old ids still open.
    let new_key = new_key();
    std::fs::write(&r.ring, format!("{new_key}\n{old_key}\n")).unwrap();
    assert!(reloads(1).await, "ring reloaded on every replica");
    let new_id = r.open(1, ALICE_KEY).await;
    let only_new = mcp_edge::cluster::KeyRing::parse(&new_key, std::path::Path::new("t")).unwrap();
    let only_old = mcp_edge::cluster::KeyRing::parse(&old_key, std::path::Path::new("t")).unwrap();
    assert!(only_new.open(&new_id).is_some() && only_old.open(&new_id).is_none());
    for i in 0..2 {
        assert_eq!(
            r.call(i, ALICE_KEY, &old_id, "count", json!({})).await.0,
            200
        );
        assert_eq!(
            r.call(i, ALICE_KEY, &new_id, "count", json!({})).await.0,
            200
        );
    }
    // A bad ring is refused and the last good one kept.
    std::fs::write(&r.ring, "not a key\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || {
            r.edge(0)
                .secrets()
                .and_then(|s| s.counts("session_keys"))
                .is_some_and(|c| c.failed.load(Ordering::Relaxed) >= 1)
        })
        .await
    );
    assert_eq!(
        r.call(1, ALICE_KEY, &old_id, "count", json!({})).await.0,
        200
    );
    // The old key removed: its ids are refused on every replica.
    std::fs::write(&r.ring, format!("{new_key}\n")).unwrap();
    assert!(reloads(2).await);
    for i in 0..2 {
        assert_eq!(
            r.call(i, ALICE_KEY, &old_id, "count", json!({})).await.0,
            404,
            "replica {i}"
        );
        assert_eq!(
            r.call(i, ALICE_KEY, &new_id, "count", json!({})).await.0,
            200,
            "replica {i}"
        );
    }
    r.shutdown().await;
}

/// Rough cost of the hop: `cargo test --release --test integration cluster_latency --
/// --ignored --nocapture`. A speed figure, so not asserted.
#[tokio::test]
#[ignore]
async fn cluster_latency() {
    python_sdk();
    let r = Replicas::start(
        2,
        &[
            ("MCP_RATE_LIMIT", "100000/min"),
            ("MCP_RATE_BURST", "100000"),
        ],
    )
    .await;
    let sid = r.open(0, ALICE_KEY).await;
    let sample = async |replica: usize| {
        let mut times = Vec::new();
        for _ in 0..300 {
            let start = std::time::Instant::now();
            let (status, _) = r
                .call(replica, ALICE_KEY, &sid, "echo", json!({"text": "x"}))
                .await;
            assert_eq!(status, 200);
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        (times[times.len() / 2], times[times.len() * 99 / 100])
    };
    sample(0).await;
    sample(1).await;
    let local = sample(0).await;
    let forwarded = sample(1).await;
    println!(
        "tools/call echo: local p50 {:.2} ms p99 {:.2} ms; forwarded p50 {:.2} ms p99 {:.2} ms; added p50 {:.2} ms",
        local.0,
        local.1,
        forwarded.0,
        forwarded.1,
        forwarded.0 - local.0
    );
    r.shutdown().await;
}

#[test]
fn gen_session_key_and_check_config_validate_the_ring() {
    use std::process::Command;
    let out = Command::new(bin()).arg("gen-session-key").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(mcp_edge::cluster::KeyRing::parse(&key, std::path::Path::new("k")).is_ok());
    let fx = Fixture::new();
    let ring = fx.dir.path().join("session_keys");
    let check = |ring_text: &str, extra: &[(&str, &str)]| {
        std::fs::write(&ring, ring_text).unwrap();
        Command::new(bin())
            .arg("check-config")
            .env_clear()
            .envs(fx.env())
            .env("MCP_SESSION_KEYS_FILE", &ring)
            .env("MCP_PEER_LISTEN", "127.0.0.1:8444")
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    };
    let good = check(&key, &[]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stderr).contains("session keys: 1 key(s)"));
    let secret_looking = "c2VjcmV0LXNob3J0";
    let bad = check(&format!("{key}# two\n{secret_looking}\n"), &[]);
    assert_eq!(bad.status.code(), Some(64));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("session_keys line 3") && err.contains("expected 32"),
        "{err}"
    );
    assert!(
        !err.contains(secret_looking) && !err.contains(key.trim()),
        "{err}"
    );
    // A peer listener on 0.0.0.0 needs an advertised address; one needs the ring file.
    let out = Command::new(bin())
        .arg("check-config")
        .env_clear()
        .envs(fx.env())
        .env("MCP_PEER_LISTEN", "0.0.0.0:8444")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.advertise") && err.contains("MCP_PEER_ADVERTISE"),
        "{err}"
    );
    assert!(
        err.contains("cluster.key_ring_file") && err.contains("MCP_SESSION_KEYS_FILE"),
        "{err}"
    );
}
