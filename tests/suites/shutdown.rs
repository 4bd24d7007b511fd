//! SIGTERM: stop accepting, let the call in flight finish, exit 0.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish() {
    let fx = Fixture::new();
    let (mut child, port) = spawn_edge(&fx, &[], None).await;
    let url = format!("https://localhost:{port}/mcp");
    let http = client_trusting(&fx.ca_pem);
    let post = || {
        http.post(&url)
            .bearer_auth(ALICE_KEY)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
    };
    let init = post()
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ok = post()
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);

    // A tools/call whose body is still arriving when SIGTERM lands.
    let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"tls"}}}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tx.send(Ok(first.as_bytes().to_vec())).await.unwrap();
    let call = tokio::spawn(
        post()
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-06-18")
            .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile new connections are refused.
    let fresh = client_trusting(&fx.ca_pem)
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await;
    assert!(fresh.is_err(), "listener closed after SIGTERM");
    tx.send(Ok(rest.as_bytes().to_vec())).await.unwrap();
    drop(tx);

    let response = call.await.unwrap().expect("the in-flight call is answered");
    assert_eq!(response.status(), 200);
    let msgs = messages(&response.text().await.unwrap());
    let result = msgs
        .iter()
        .find(|m| m["id"] == 3)
        .expect("a response for the call");
    assert!(result["result"]["content"].is_array(), "{result}");

    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
