//! Deployment: the plain-HTTP redirect listener and HSTS.

use crate::common::*;

#[tokio::test]
async fn plain_http_only_redirects_and_https_sends_hsts() {
    let redirect_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let edge = Edge::start_with(|env| {
        env.insert("MCP_HTTP_REDIRECT_PORT".into(), redirect_port.to_string());
        env.insert("MCP_PUBLIC_HTTPS_PORT".into(), "8443".into());
        env.insert("MCP_HSTS_MAX_AGE".into(), "365d".into());
    })
    .await;
    let addr = edge.running.redirect_addr().expect("redirect listener");
    assert_eq!(addr.port(), redirect_port);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (host, method) in [("localhost", "GET"), ("attacker.example", "POST")] {
        let r = plain
            .request(method.parse().unwrap(), format!("http://{addr}/mcp?x=1"))
            .header("host", host)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 308, "{host}");
        // Foreign Host values never become redirect targets (no open redirect).
        assert_eq!(
            r.headers()["location"],
            "https://localhost:8443/mcp?x=1",
            "{host}"
        );
        assert!(r.text().await.unwrap().is_empty());
    }

    let https = edge
        .http()
        .get(format!("{}/health", edge.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        https.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let refused = edge.post(None).body("{}").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn no_redirect_listener_or_hsts_unless_configured() {
    let edge = Edge::start().await;
    assert_eq!(edge.running.redirect_addr(), None);
    let https = edge
        .http()
        .get(format!("{}/health", edge.base()))
        .send()
        .await
        .unwrap();
    assert!(!https.headers().contains_key("strict-transport-security"));
}
