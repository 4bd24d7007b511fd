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
async fn the_redirect_port_drops_connections_that_send_nothing() {
    use tokio::io::AsyncReadExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let edge = Edge::start_with(|env| {
        env.insert("MCP_HTTP_REDIRECT_PORT".into(), port.to_string());
        env.insert("MCP_FIRST_REQUEST_TIMEOUT".into(), "1s".into());
    })
    .await;
    let addr = edge.running.redirect_addr().unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("an idle connection is closed after first_request_timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
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

// ---- Shipped deployment files: Dockerfile, .dockerignore, Compose, Kubernetes ----

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Resolve YAML merge keys (`<<: *anchor`), which Compose honours.
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            for (k, v) in h {
                if k.as_str() == Some("<<") {
                    continue;
                }
                out.insert(k.clone(), merged(v));
            }
            if let Some(base) = h.get(&Yaml::String("<<".into())) {
                let bases = match base {
                    Yaml::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for b in bases {
                    if let Yaml::Hash(bh) = merged(&b) {
                        for (k, v) in bh {
                            out.entry(k).or_insert(v);
                        }
                    }
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .iter()
        .map(merged)
        .collect()
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn non_root_user(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or("");
    uid.parse::<u32>().is_ok_and(|u| u != 0)
}

#[test]
fn dockerfile_is_multi_stage_static_non_root_with_a_healthcheck() {
    let text = read("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last = froms.last().unwrap();
    assert!(
        last.contains("distroless/static") || last.contains("scratch"),
        "minimal final image: {last}"
    );
    let final_stage = text.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage");
    assert!(non_root_user(user.trim()), "{user}");
    assert!(final_stage.contains("EXPOSE 8443"));
    let health = final_stage
        .split("HEALTHCHECK")
        .nth(1)
        .expect("HEALTHCHECK")
        .split("\n\n")
        .next()
        .unwrap();
    assert!(
        health.contains(r#"CMD ["/usr/local/bin/mcp-edge", "healthcheck"]"#),
        "exec-form healthcheck through the binary (no shell): {health}"
    );
    for l in final_stage.lines() {
        for kw in ["CMD ", "ENTRYPOINT "] {
            if let Some(rest) = l.trim().strip_prefix(kw) {
                assert!(rest.trim_start().starts_with('['), "exec form only: {l}");
            }
        }
    }
    // The smoke test builds exactly what the Dockerfile builds.
    let smoke = read("tests/container_smoke.sh");
    for flag in [
        "target-feature=+crt-static",
        "--target x86_64-unknown-linux-gnu",
        "--profile container --locked",
    ] {
        assert!(text.contains(flag), "Dockerfile lacks {flag}");
        assert!(smoke.contains(flag), "container_smoke.sh lacks {flag}");
    }
}

/// The files `docker build .` would send, by `.dockerignore`'s rules (the subset of
/// the syntax used there: `*`, `!dir/`, `!dir/**`, `name`, `dir/`, `**/x`, `*.ext`).
fn build_context(dir: &Path) -> Vec<PathBuf> {
    let rules: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    /// `*` within one path segment, `**` across segments (Go filepath.Match-like).
    fn glob(p: &str, s: &str) -> bool {
        match p.split_once('*') {
            None => p == s,
            Some((head, tail)) => {
                s.starts_with(head)
                    && (0..=s.len() - head.len()).any(|i| glob(tail, &s[head.len() + i..]))
            }
        }
    }
    fn segments(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segments(&p[1..], s) || (!s.is_empty() && segments(p, &s[1..])),
            (Some(a), Some(b)) => glob(a, b) && segments(&p[1..], &s[1..]),
            _ => false,
        }
    }
    /// A path is matched when it, or one of its parent directories, matches.
    fn matches(pattern: &str, rel: &str) -> bool {
        let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
        let parts: Vec<&str> = rel.split('/').collect();
        (1..=parts.len()).any(|n| segments(&pat, &parts[..n]))
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            n != "target" && n != ".git"
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let mut included = true;
        for rule in &rules {
            match rule.strip_prefix('!') {
                Some(p) => {
                    if matches(p, &rel) {
                        included = true;
                    }
                }
                None => {
                    if matches(rule, &rel) {
                        included = false;
                    }
                }
            }
        }
        if included {
            out.push(PathBuf::from(rel));
        }
    }
    out
}

#[test]
fn dockerignore_keeps_env_files_secrets_and_build_output_out() {
    let text = read(".dockerignore");
    for must in [".env*", "target/", ".git/", "secrets/", "*.pem", "*.key"] {
        assert!(
            text.lines().any(|l| l.trim() == must),
            ".dockerignore lacks {must}"
        );
    }
    // A checkout with the files that must never reach an image planted in it.
    let tree = tempfile::tempdir().unwrap();
    let planted = [
        ".env",
        ".env.local",
        "secrets/api_keys",
        "config/secrets/tls_key",
        "src/leak.pem",
        "src/.env",
        "tls.key",
        "target/release/mcp-edge",
        ".git/config",
    ];
    for p in planted
        .iter()
        .chain(&["Cargo.toml", "Cargo.lock", "src/main.rs", "README.md"])
    {
        let path = tree.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    std::fs::copy(
        root().join(".dockerignore"),
        tree.path().join(".dockerignore"),
    )
    .unwrap();
    let sent = build_context(tree.path());
    let mut sent: Vec<String> = sent.iter().map(|p| p.to_string_lossy().into()).collect();
    sent.sort();
    assert_eq!(sent, ["Cargo.lock", "Cargo.toml", "src/main.rs"]);

    // The real checkout: only the build inputs.
    let context = build_context(root());
    assert!(context.iter().any(|p| p == Path::new("Cargo.toml")));
    assert!(context.iter().any(|p| p == Path::new("src/main.rs")));
    for p in &context {
        let s = p.to_string_lossy();
        assert!(
            s == "Cargo.toml" || s == "Cargo.lock" || s.starts_with("src/"),
            "{s} would be sent to the Docker daemon"
        );
        assert!(!s.contains(".env") && !s.ends_with(".pem"), "{s}");
    }
    // Every COPY source of the build stage is in the context.
    for line in read("Dockerfile")
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            let src = src.trim_end_matches('/');
            assert!(
                context.iter().any(|p| p.starts_with(src)),
                "COPY {src} is not in the build context"
            );
        }
    }
}

#[test]
fn compose_runs_hardened_with_secrets_limits_and_an_internal_upstream() {
    let text = read("docker-compose.yml");
    let doc = &yaml("docker-compose.yml")[0];
    assert!(
        doc["version"].is_badvalue(),
        "Compose v2 files have no `version:`"
    );
    let services = &doc["services"];
    let edge = &services["edge"];
    assert_eq!(edge["restart"].as_str(), Some("unless-stopped"));
    assert_eq!(edge["init"].as_bool(), Some(true), "an init reaps orphans");
    assert_eq!(edge["read_only"].as_bool(), Some(true));
    assert!(non_root_user(edge["user"].as_str().unwrap()));
    assert_eq!(strs(&edge["cap_drop"]), ["ALL"]);
    let health = strs(&edge["healthcheck"]["test"]);
    assert_eq!(health, ["CMD", "/usr/local/bin/mcp-edge", "healthcheck"]);
    let limits = &edge["deploy"]["resources"]["limits"];
    assert!(limits["cpus"].as_str().is_some() && limits["memory"].as_str().is_some());
    assert!(strs(&edge["ports"]).iter().any(|p| p.ends_with(":8443")));
    let volumes = strs(&edge["volumes"]);
    assert!(
        volumes.iter().any(|v| v.ends_with(":/run/secrets:ro")),
        "{volumes:?}"
    );
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("acme:/var/lib/mcp-edge/acme"))
    );
    assert_eq!(edge["env_file"].as_str(), Some(".env"));
    // No secret values inline: the environment only points at files.
    for (k, v) in edge["environment"].as_hash().unwrap() {
        let k = k.as_str().unwrap();
        assert!(
            !k.contains("KEY") && !k.contains("TOKEN") && !k.contains("PASSWORD"),
            "{k}={v:?}"
        );
    }
    // The secrets are made once by the same image, non-root, without a network.
    let init = &services["secrets-init"];
    assert_eq!(strs(&init["command"])[0], "init-secrets");
    assert_eq!(init["network_mode"].as_str(), Some("none"));
    assert!(non_root_user(init["user"].as_str().unwrap()));
    assert_eq!(
        edge["depends_on"]["secrets-init"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    // The upstream is reachable only on the internal network.
    let upstream = &services["upstream"];
    assert_eq!(strs(&upstream["networks"]), ["internal"]);
    assert!(
        upstream["ports"].is_badvalue(),
        "the upstream publishes no port"
    );
    assert_eq!(
        doc["networks"]["internal"]["internal"].as_bool(),
        Some(true)
    );
    assert_eq!(upstream["read_only"].as_bool(), Some(true));
    assert!(
        upstream["deploy"]["resources"]["limits"]["memory"]
            .as_str()
            .is_some()
    );
    assert!(!text.contains("\nversion:"));

    // Production override: real Docker secrets for everything.
    let prod = &yaml("docker-compose.prod.yml")[0];
    let names: Vec<String> = prod["services"]["edge"]["secrets"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| s["source"].as_str().unwrap().to_owned())
        })
        .collect();
    for s in [
        "api_keys",
        "tls_cert",
        "tls_key",
        "jwt_keys",
        "upstream_token",
    ] {
        assert!(names.iter().any(|n| n == s), "edge lacks secret {s}");
        assert!(
            prod["secrets"][s]["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("./secrets/")),
            "secret {s} must come from a file under ./secrets/"
        );
    }
    // .env.example names every variable the Compose file interpolates.
    let env_example = read(".env.example");
    for var in text
        .split("${")
        .skip(1)
        .filter_map(|s| s.split([':', '}']).next())
    {
        assert!(
            env_example.contains(&format!("{var}=")),
            ".env.example lacks {var}"
        );
    }
}

#[test]
fn compose_edge_config_parses_with_its_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, read("config/compose/edge.toml")).unwrap();
    let env: std::collections::HashMap<String, String> = Default::default();
    let config = mcp_edge::config::load(mcp_edge::config::Sources {
        file: Some(path),
        env: &env,
        flags: Default::default(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.https.redirect_port, Some(8080));
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["docs", "upstream"]);
    let upstream = &config.backends[1];
    assert!(
        matches!(upstream.kind, mcp_edge::config::BackendKind::Http { .. }),
        "{upstream:?}"
    );
}

#[test]
fn kubernetes_manifests_are_hardened_probed_and_autoscaled() {
    let mut kinds = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(root().join("config/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let rel = path
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .to_string();
            for doc in yaml(&rel) {
                if let Some(kind) = doc["kind"].as_str() {
                    kinds.insert(kind.to_owned(), doc.clone());
                }
            }
        }
    }
    let d = &kinds["Deployment"];
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(pod["securityContext"]["runAsUser"].as_i64().unwrap() > 0);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert!(c["resources"]["limits"]["memory"].as_str().is_some());
    assert!(c["resources"]["limits"]["cpu"].as_str().is_some());
    assert!(
        c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(8443))
    );
    // Secrets: a whole Secret volume, read-only, no subPath (subPath mounts never see
    // updates, so rotation would need a restart).
    let secret_volume = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| !v["secret"].is_badvalue())
        .expect("a secret volume");
    let name = secret_volume["name"].as_str().unwrap();
    let mount = c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some(name))
        .expect("the secret volume is mounted");
    assert_eq!(mount["mountPath"].as_str(), Some("/run/secrets"));
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    assert!(
        mount["subPath"].is_badvalue(),
        "subPath defeats secret rotation"
    );

    let svc = &kinds["Service"];
    assert_eq!(svc["spec"]["ports"][0]["port"].as_i64(), Some(443));
    let hpa = &kinds["HorizontalPodAutoscaler"];
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        d["metadata"]["name"].as_str()
    );
    assert!(hpa["spec"]["minReplicas"].as_i64().unwrap() >= 2);
    // The ConfigMap's edge.toml is a valid configuration.
    let toml_text = kinds["ConfigMap"]["data"]["edge.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, toml_text).unwrap();
    let env: std::collections::HashMap<String, String> = Default::default();
    mcp_edge::config::load(mcp_edge::config::Sources {
        file: Some(path),
        env: &env,
        flags: Default::default(),
    })
    .unwrap_or_else(|e| panic!("ConfigMap edge.toml: {e}"));
}

#[tokio::test]
async fn the_example_upstream_requires_its_token_and_serves_tools() {
    let dir = tempfile::tempdir().unwrap();
    let token = "upstream-token-0123456789abcdef";
    let token_file = dir.path().join("upstream_token");
    std::fs::write(&token_file, token).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = tokio::process::Command::new("python3")
        .arg(root().join("examples/upstream/server.py"))
        .env("UPSTREAM_TOKEN_FILE", &token_file)
        .env("UPSTREAM_HOST", "127.0.0.1")
        .env("UPSTREAM_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the example upstream");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let up = eventually(std::time::Duration::from_secs(20), async || {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(
        up,
        "the example upstream did not start (pip install -r tests/python/requirements.txt)"
    );
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}
    });
    let post = |bearer: Option<&str>| {
        let mut rb = http
            .post(format!("{base}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        rb
    };
    assert_eq!(post(None).send().await.unwrap().status(), 401);
    assert_eq!(
        post(Some("wrong-token-0123456789abcdef"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = post(Some(token)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(body.contains("example-upstream"), "{body}");
}
