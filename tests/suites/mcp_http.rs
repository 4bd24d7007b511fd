//! MCP over HTTPS with rmcp's own client: session mode and stateless mode.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientConfig, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::ClientLifecycleMode;
use rmcp::service::ClientServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::common::*;

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn session_client_initializes_lists_calls_and_reads() {
    let edge = Edge::start().await;
    let client = edge.mcp(ALICE_KEY).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "mcp-edge");

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["read_doc", "search_docs"]);

    let result = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(args(json!({"query": "tls", "limit": 5}))),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true));
    let hits = result.structured_content.as_ref().unwrap()["hits"]
        .as_array()
        .unwrap()
        .clone();
    // BM25: the document about TLS (title and body) outranks the one mentioning it once.
    assert_eq!(hits[0]["path"], "guide/tls.md", "{hits:?}");
    assert!(hits.iter().any(|h| h["path"] == "rate-limits.md"));
    assert_eq!(hits[0]["title"], "Terminating TLS");

    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<_> = resources.iter().map(|r| r.uri.clone()).collect();
    assert!(
        uris.contains(&"docs:///guide/tls.md".to_string()),
        "{uris:?}"
    );
    let read = client
        .read_resource(ReadResourceRequestParams::new("docs:///guide/tls.md"))
        .await
        .unwrap();
    let text = serde_json::to_value(&read.contents[0]).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.starts_with("# Terminating TLS"));

    let doc = client
        .call_tool(
            CallToolRequestParams::new("read_doc")
                .with_arguments(args(json!({"path": "rate-limits.md"}))),
        )
        .await
        .unwrap();
    assert_ne!(doc.is_error, Some(true));

    // Confined to the docs dir: a tool error the caller can read, not a crash.
    let escape = client
        .call_tool(
            CallToolRequestParams::new("read_doc")
                .with_arguments(args(json!({"path": "../ca.pem"}))),
        )
        .await
        .unwrap();
    assert_eq!(escape.is_error, Some(true));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stateless_2026_client_works() {
    let edge = Edge::start().await;
    let transport = StreamableHttpClientTransport::with_client(
        edge.http(),
        StreamableHttpClientTransportConfig::with_uri(edge.url()).auth_header(BOB_KEY),
    );
    let client = ClientConfig::default()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("stateless client connects");
    let result = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(args(json!({"query": "principal"}))),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true));
    assert_eq!(
        edge.running.state().sessions.len(),
        0,
        "stateless requests make no session"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn docs_changes_are_followed_without_restart() {
    let edge = Edge::start().await;
    let client = edge.mcp(ALICE_KEY).await;
    std::fs::write(
        edge.fx.docs_dir.join("new-feature.md"),
        "# Kaleidoscope\n\nThe kaleidoscope feature is new.\n",
    )
    .unwrap();
    let found = eventually(Duration::from_secs(10), async || {
        let r = client
            .call_tool(
                CallToolRequestParams::new("search_docs")
                    .with_arguments(args(json!({"query": "kaleidoscope"}))),
            )
            .await
            .unwrap();
        r.structured_content.unwrap()["hits"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    })
    .await;
    assert!(found, "a new document becomes searchable");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn http2_and_http11_are_both_served() {
    let edge = Edge::start().await;
    let h2 = edge
        .http()
        .get(format!("{}/health", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(edge.fx.ca_pem.as_bytes()).unwrap()])
        .http1_only()
        .build()
        .unwrap()
        .get(format!("{}/health", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);
}

#[tokio::test]
async fn streams_are_marked_unbuffered() {
    let edge = Edge::start().await;
    let r = edge.initialize(ALICE_KEY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert!(r.headers().contains_key("x-request-id"));
}
