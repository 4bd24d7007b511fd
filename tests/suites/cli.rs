//! The binary's subcommands: healthcheck, check-config, hash-key, and config errors.

use std::process::{Command, Stdio};

use crate::common::*;

#[tokio::test]
async fn healthcheck_subcommand_probes_the_running_server() {
    let edge = Edge::start().await;
    let ok = tokio::process::Command::new(bin())
        .args(["healthcheck", "--url", &format!("{}/health", edge.base())])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Default URL comes from the config: the port via MCP_PORT.
    let by_config = tokio::process::Command::new(bin())
        .arg("healthcheck")
        .env_clear()
        .env("MCP_PORT", edge.port().to_string())
        .output()
        .await
        .unwrap();
    assert!(
        by_config.status.success(),
        "{}",
        String::from_utf8_lossy(&by_config.stderr)
    );

    let down = tokio::process::Command::new(bin())
        .args([
            "healthcheck",
            "--url",
            "https://127.0.0.1:1/health",
            "--timeout",
            "2s",
        ])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn bad_config_exits_64_and_names_every_key() {
    let out = Command::new(bin())
        .arg("check-config")
        .env_clear()
        .env("MCP_PORT", "eighty")
        .env("MCP_LOG_FORMAT", "xml")
        .env("MCP_RATE_LIMIT", "10 per minute")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "MCP_PORT",
        "server.port",
        "MCP_LOG_FORMAT",
        "log.format",
        "MCP_RATE_LIMIT",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }

    let fx = Fixture::new();
    let file = fx.dir.path().join("edge.toml");
    std::fs::write(
        &file,
        "[server]\nport = 8443\nbogus = 1\n[tls]\nmode = \"files\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["--config", file.to_str().unwrap(), "serve"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.bogus") && err.contains("edge.toml"),
        "{err}"
    );

    // A deployment config without its secret files does not fall back to generated ones.
    std::fs::write(&file, "[server]\nport = 8443\n").unwrap();
    let out = Command::new(bin())
        .args(["--config", file.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert_file") && err.contains("auth.api_keys_file"),
        "{err}"
    );
}

#[test]
fn missing_secret_file_is_a_startup_error() {
    let fx = Fixture::new();
    let mut env = fx.env();
    env.insert("MCP_API_KEYS_FILE".into(), "/nonexistent/api_keys".into());
    let out = Command::new(bin()).env_clear().envs(&env).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/api_keys"));
}

#[test]
fn check_config_validates_secrets_and_prints_no_secret() {
    let fx = Fixture::new();
    let out = Command::new(bin())
        .arg("check-config")
        .env_clear()
        .envs(fx.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("3 principal(s)"), "{all}");
    assert!(all.contains("\"port\"") || all.contains("listen"), "{all}");
    assert!(!all.contains(ALICE_KEY) && !all.contains(BOB_KEY));
}

#[test]
fn hash_key_prints_a_sha256_line_usable_in_the_keys_file() {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"team-key-0123456789abc\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let hashed = line.trim();
    assert_eq!(
        hashed,
        mcp_edge::auth::api_keys::hash_key(&secrecy::SecretString::from(
            "team-key-0123456789abc".to_string()
        ))
    );
    let store = mcp_edge::auth::KeyStore::parse(&format!("team {hashed}\n")).unwrap();
    assert!(
        store
            .verify(&secrecy::SecretString::from(
                "team-key-0123456789abc".to_string()
            ))
            .is_some()
    );
}

#[tokio::test]
async fn keys_never_reach_the_log_even_at_trace_level() {
    let fx = Fixture::new();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut child, port) = spawn_edge(&fx, &[("MCP_LOG_LEVEL", "trace")], Some(log.clone())).await;
    let http = client_trusting(&fx.ca_pem);
    let url = format!("https://localhost:{port}/mcp");
    for key in [ALICE_KEY, WRONG_KEY] {
        let r = http
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
            .send()
            .await
            .unwrap();
        let _ = r.text().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    child.kill().await.unwrap();
    let text = log.lock().unwrap().clone();
    assert!(
        text.contains("\"principal\":\"alice\""),
        "the access log names the principal"
    );
    assert!(text.contains("invalid_key"), "the failure reason is logged");
    assert!(
        !text.contains(ALICE_KEY) && !text.contains(WRONG_KEY),
        "a key leaked into the log"
    );
}

#[tokio::test]
async fn healthcheck_needs_only_the_address_and_scheme() {
    let edge = Edge::start().await;
    // A deployment config whose secrets are missing or half-configured: the server
    // could not start with it, but the probe only needs the port and the scheme.
    let out = tokio::process::Command::new(bin())
        .arg("healthcheck")
        .env_clear()
        .env("MCP_PORT", edge.port().to_string())
        .env("MCP_TLS_MODE", "files")
        .env("MCP_TLS_CERT_FILE", "/nonexistent/tls_cert")
        .env("MCP_API_KEYS_FILE", "/nonexistent/api_keys")
        .env("MCP_AUTH_MODE", "api-keys+jwt")
        .env("MCP_RATE_LIMIT", "lots")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What it does read must be valid, and the error names it.
    let out = tokio::process::Command::new(bin())
        .arg("healthcheck")
        .env_clear()
        .env("MCP_PORT", "eighty")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MCP_PORT"));
}

/// `check-config` and `serve` share one preflight: the same broken configurations
/// give the same problems, every one of them, with exit code 64. (A missing stdio
/// backend program is the one difference: `serve` starts and retries it.)
#[test]
fn check_config_and_serve_report_the_same_problems() {
    let fx = Fixture::new();
    let dir = fx.dir.path();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let ring = dir.join("ring");
    std::fs::write(&ring, "too-short\n").unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![("MCP_API_KEYS_FILE", "/nonexistent/api_keys".into())],
        vec![("MCP_TLS_CERT_FILE", path(&garbage))],
        vec![("MCP_DOCS_DIR", "/nonexistent/docs".into())],
        vec![
            ("MCP_SESSION_KEYS_FILE", path(&ring)),
            ("MCP_API_KEYS_FILE", "/nonexistent/api_keys".into()),
            ("MCP_AUDIT_FILE", "/nonexistent/dir/audit.jsonl".into()),
            ("MCP_AUDIT_OUTPUT", "file".into()),
        ],
    ];
    for case in cases {
        let run = |command: &str| {
            let out = Command::new(bin())
                .arg(command)
                .env_clear()
                .envs(fx.env())
                .envs(case.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            let problems: Vec<String> = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| l.starts_with("mcp-edge: "))
                .map(str::to_owned)
                .collect();
            (out.status.code(), problems)
        };
        let (check_code, checked) = run("check-config");
        let (serve_code, served) = run("serve");
        assert_eq!(check_code, Some(64), "{case:?}: {checked:?}");
        assert_eq!(serve_code, Some(64), "{case:?}: {served:?}");
        assert!(!checked.is_empty(), "{case:?}");
        assert_eq!(checked, served, "{case:?}");
    }
}

#[test]
fn check_config_warns_of_an_unreachable_identity_provider_and_checks_its_secret() {
    let fx = Fixture::new();
    let secret = fx.dir.path().join("oidc_client_secret");
    let signing = fx.dir.path().join("oauth_signing_key");
    std::fs::write(
        &signing,
        mcp_edge::auth::edge_token::generate_signing_key().as_str(),
    )
    .unwrap();
    let oidc_env = |secret_file: &std::path::Path| {
        let mut env = fx.env();
        for (k, v) in [
            ("MCP_OAUTH", "true".to_string()),
            ("MCP_OAUTH_SIGNING_KEY_FILE", signing.display().to_string()),
            // Nothing listens there.
            (
                "MCP_OAUTH_OIDC_ISSUER",
                format!("http://127.0.0.1:{}", free_port()),
            ),
            ("MCP_OAUTH_OIDC_CLIENT_ID", "edge".to_string()),
            (
                "MCP_OAUTH_OIDC_CLIENT_SECRET_FILE",
                secret_file.display().to_string(),
            ),
        ] {
            env.insert(k.to_string(), v);
        }
        env
    };
    // The secret file missing: an error naming the key and the file.
    let out = Command::new(bin())
        .arg("check-config")
        .env_clear()
        .envs(oidc_env(&secret))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("auth.oauth.oidc.client_secret_file") && said.contains("oidc_client_secret"),
        "{said}"
    );
    // With it: only a warning that the issuer does not answer.
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .env_clear()
        .envs(oidc_env(&secret))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("warning: auth.oauth.oidc.issuer"), "{said}");
    assert!(said.contains("oauth: 1 signing key(s)"), "{said}");
    assert!(
        !said.contains("s3cret-value")
            && !String::from_utf8_lossy(&out.stdout).contains("s3cret-value")
    );
}

/// The default (pretty) log format, written to a pipe or file as in Docker, systemd or a
/// log shipper: plain text, no terminal colour codes (they garble stored logs, and
/// formatting them cost about 5 % of the edge's instructions per proxied call).
#[tokio::test]
async fn pretty_logs_to_a_pipe_carry_no_colour_codes() {
    let fx = Fixture::new();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut child, port) =
        spawn_edge(&fx, &[("MCP_LOG_FORMAT", "pretty")], Some(log.clone())).await;
    // One request, so an access line follows.
    let r = client_trusting(&fx.ca_pem)
        .post(format!("https://localhost:{port}/mcp"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let logged = || log.lock().unwrap().clone();
    let access = eventually(std::time::Duration::from_secs(10), async || {
        logged()
            .lines()
            .any(|l| l.contains("mcp_edge::access") && l.contains(" status=401 "))
    })
    .await;
    child.kill().await.unwrap();
    assert!(access, "no plain `status=401` access line:\n{:?}", logged());
    assert!(
        !logged().contains('\u{1b}'),
        "terminal colour codes in a log written to a pipe:\n{:?}",
        logged()
    );
}
