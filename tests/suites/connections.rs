//! Connections after the first request: idle, trickling headers and bodies (HTTP/1.1 and
//! HTTP/2), connection caps, 413 from Content-Length, and the real client address from
//! a real HAProxy (PROXY v1/v2) and trusted X-Forwarded-For.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::common::haproxy::{Haproxy, ProxyHeader};
use crate::common::{ALICE_KEY, Edge, Fixture, WRONG_KEY, client_trusting, spawn_edge};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP connection from a chosen loopback source address.
async fn tcp_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// A real TLS connection (test CA) offering the given ALPN protocols.
async fn tls(edge: &Edge, alpn: &[&[u8]], source: IpAddr) -> TlsStream<TcpStream> {
    mcp_edge::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let pem = edge.fx.ca_pem.as_bytes();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tcp_from(source, edge.running.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

use rustls_pki_types::pem::PemObject;

/// Read until the peer closes (Ok(0) or an error); returns how long it took, or None
/// when still open after `limit`.
async fn closed_within<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    result.ok().map(|()| start.elapsed())
}

/// Read one HTTP/1.1 response (headers and a Content-Length body) off a raw stream.
async fn read_response<S: AsyncReadExt + Unpin>(stream: &mut S) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before a response");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

async fn short_timeouts(extra: &[(&str, &str)]) -> Edge {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Edge::start_with(move |env| {
        env.insert("MCP_IDLE_TIMEOUT".into(), "1s".into());
        env.extend(extra);
    })
    .await
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let edge = short_timeouts(&[]).await;
    let mut conn = tls(&edge, &[b"http/1.1"], ip("127.0.0.1")).await;
    conn.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut conn, Duration::from_secs(8))
        .await
        .expect("the idle connection is closed");
    assert!(
        took >= Duration::from_millis(700),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let edge = short_timeouts(&[]).await;
    let conn = tls(&edge, &[b"h2"], ip("127.0.0.1")).await;
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(conn))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    let request = http::Request::get("https://localhost/health")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), driver)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "closed too early: {took:?}"
    );
    assert!(
        sender
            .send_request(
                http::Request::get("https://localhost/health")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap()
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn trickled_headers_of_a_second_request_are_cut_at_the_header_timeout() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_IDLE_TIMEOUT".into(), "30s".into());
        env.insert("MCP_HEADER_READ_TIMEOUT".into(), "1s".into());
    })
    .await;
    let mut conn = tls(&edge, &[b"http/1.1"], ip("127.0.0.1")).await;
    conn.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Stay idle a while (below the idle timeout): the header timer must not run yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = Instant::now();
    let (mut read, mut write) = tokio::io::split(conn);
    let trickle = tokio::spawn(async move {
        for b in
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if write.write_all(&[*b]).await.is_err() || write.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    let took = closed_within(&mut read, Duration::from_secs(10))
        .await
        .expect("a connection trickling headers is closed");
    trickle.abort();
    assert!(
        took >= Duration::from_millis(700),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let _ = start;
}

#[tokio::test]
async fn a_trickling_body_gets_408_at_the_body_timeout() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_BODY_READ_TIMEOUT".into(), "1s".into());
    })
    .await;
    let mut conn = tls(&edge, &[b"http/1.1"], ip("127.0.0.1")).await;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE_KEY}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 1000\r\n\r\n{{\"jsonrpc\""
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (mut read, mut write) = tokio::io::split(conn);
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let response = read_response(&mut read).await;
    trickle.abort();
    let took = start.elapsed();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_read_timeout"), "{response}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_content_length_over_the_limit_gets_413_without_sending_the_body() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_LEGACY_SSE".into(), "true".into());
    })
    .await;
    for path in ["/mcp", "/messages?sessionId=x"] {
        let mut conn = tls(&edge, &[b"http/1.1"], ip("127.0.0.1")).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE_KEY}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: 100000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let start = Instant::now();
        let response = read_response(&mut conn).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{path}: {response}");
        assert!(start.elapsed() < Duration::from_secs(3), "{path}");
    }
}

async fn refused_at_once(source: &str, to: SocketAddr) -> bool {
    let Ok(mut tcp) = tcp_from(ip(source), to).await else {
        return true;
    };
    closed_within(&mut tcp, Duration::from_secs(3))
        .await
        .is_some()
}

#[tokio::test]
async fn connection_caps_refuse_extra_connections_while_a_good_client_keeps_working() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_MAX_CONNECTIONS".into(), "8".into());
        env.insert("MCP_MAX_CONNECTIONS_PER_IP".into(), "4".into());
    })
    .await;
    let addr = edge.running.addr();
    let metric = |reason: &str| {
        mcp_edge::metrics::sample(
            &mcp_edge::metrics::render(),
            "mcp_edge_refused_connections_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let (per_ip_before, total_before) =
        (metric("max_connections_per_ip"), metric("max_connections"));
    // The good client: one kept-alive connection, from its own address.
    let good = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(edge.fx.ca_pem.as_bytes()).unwrap()])
        .local_address(ip("127.0.0.2"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = format!("{}/health", edge.base());
    assert_eq!(good.get(&health).send().await.unwrap().status(), 200);

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tcp_from(ip("127.0.0.1"), addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        refused_at_once("127.0.0.1", addr).await,
        "a 5th connection from one address"
    );
    for _ in 0..3 {
        held.push(tcp_from(ip("127.0.0.3"), addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 4 + 3 held + the good client's = 8: the total is reached.
    assert!(
        refused_at_once("127.0.0.4", addr).await,
        "a connection over the total"
    );
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(good.get(&health).send().await.unwrap().status(), 200);
        worst = worst.max(start.elapsed());
    }
    assert!(
        worst < Duration::from_secs(2),
        "good client's worst latency {worst:?}"
    );
    assert!(metric("max_connections_per_ip") > per_ip_before);
    assert!(metric("max_connections") > total_before);
    // Freed slots are reusable.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = client_trusting(&edge.fx.ca_pem);
    assert_eq!(other.get(&health).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_sse_stream_outlives_the_idle_timeout() {
    let edge = short_timeouts(&[]).await;
    let init = edge.initialize(ALICE_KEY).await;
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let notified = edge
        .post(Some(ALICE_KEY))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert!(notified.status().is_success());
    let mut stream = edge
        .http()
        .get(edge.url())
        .bearer_auth(ALICE_KEY)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // rmcp sends a keep-alive every 15 s; the stream must still be open to carry it,
    // long after the 1 s idle timeout.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let got = tokio::time::timeout(Duration::from_secs(25), stream.chunk())
            .await
            .expect("a keep-alive within 25 s")
            .expect("the stream is not broken");
        assert!(
            got.is_some(),
            "the stream ended after {:?}",
            start.elapsed()
        );
    }
}

/// The X-Forwarded-For of a trusted forwarder names the client (lockout keyed on it);
/// from any other peer it is ignored.
#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_forwarders() {
    let edge = Edge::start_with(|env| {
        env.insert("MCP_TRUSTED_FORWARDERS".into(), "127.0.0.2/32".into());
        env.insert("MCP_FAILED_AUTH_BURST".into(), "2".into());
        env.insert("MCP_FAILED_AUTH_RATE".into(), "1/hour".into());
    })
    .await;
    let from = |source: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(edge.fx.ca_pem.as_bytes()).unwrap()])
            .local_address(ip(source))
            .build()
            .unwrap()
    };
    let call = async |client: &reqwest::Client, xff: &str, key: &str| {
        client
            .post(edge.url())
            .bearer_auth(key)
            .header("x-forwarded-for", xff)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let proxy = from("127.0.0.2");
    for _ in 0..3 {
        call(&proxy, "6.6.6.6, 203.0.113.7", WRONG_KEY).await;
    }
    assert_eq!(
        call(&proxy, "203.0.113.7", ALICE_KEY).await,
        429,
        "the guesser is locked out"
    );
    assert_ne!(
        call(&proxy, "203.0.113.8", ALICE_KEY).await,
        429,
        "another client behind the same proxy is not"
    );
    let stranger = from("127.0.0.3");
    for _ in 0..3 {
        call(&stranger, "203.0.113.50", WRONG_KEY).await;
    }
    assert_eq!(
        call(&stranger, "203.0.113.51", ALICE_KEY).await,
        429,
        "an untrusted peer cannot escape its lockout with X-Forwarded-For"
    );
}

#[tokio::test]
async fn behind_haproxy_the_edge_sees_the_client_address_from_the_proxy_protocol() {
    let fx = Fixture::new();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let (_edge, port) = spawn_edge(
        &fx,
        &[
            ("MCP_PROXY_PROTOCOL_FROM", "127.0.0.1/32"),
            ("MCP_FAILED_AUTH_BURST", "2"),
            ("MCP_FAILED_AUTH_RATE", "1/hour"),
        ],
        Some(log.clone()),
    )
    .await;
    // HAProxy in `mode tcp`, one balancer per PROXY version, both from 127.0.0.1.
    let balancer_v2 = Haproxy::start(&[port], ProxyHeader::V2, "127.0.0.1");
    let balancer_v1 = Haproxy::start(&[port], ProxyHeader::V1, "127.0.0.1");
    let (v2, v1) = (balancer_v2.port, balancer_v1.port);
    let from = |source: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(fx.ca_pem.as_bytes()).unwrap()])
            .local_address(ip(source))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let call = async |client: &reqwest::Client, port: u16, key: &str| {
        client
            .post(format!("https://localhost:{port}/mcp"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // A guesser at 127.0.0.2 through both balancer ports locks out itself only.
    let guesser = from("127.0.0.2");
    call(&guesser, v2, WRONG_KEY).await;
    call(&guesser, v1, WRONG_KEY).await;
    call(&guesser, v2, WRONG_KEY).await;
    assert_eq!(call(&guesser, v1, ALICE_KEY).await, 429);
    let neighbour = from("127.0.0.3");
    for port in [v2, v1] {
        assert_ne!(
            call(&neighbour, port, ALICE_KEY).await,
            429,
            "a client behind the same balancer is not locked out"
        );
    }
    let logged = crate::common::eventually(Duration::from_secs(5), async || {
        let text = log.lock().unwrap().clone();
        text.contains("\"remote\":\"127.0.0.2:") && text.contains("\"remote\":\"127.0.0.3:")
    })
    .await;
    assert!(logged, "the access log shows the real client addresses");

    // Straight to the edge, a PROXY header from an untrusted peer is refused...
    let edge_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut spoof = tcp_from(ip("127.0.0.2"), edge_addr).await.unwrap();
    spoof
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), spoof.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let refused = crate::common::eventually(Duration::from_secs(5), async || {
        log.lock()
            .unwrap()
            .contains("PROXY protocol header from an untrusted peer")
    })
    .await;
    assert!(refused);
    // ...and the trusted balancer's address must send one.
    let direct = client_trusting(&fx.ca_pem)
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await;
    assert!(
        direct.is_err(),
        "no PROXY header from a trusted peer: refused"
    );
}
