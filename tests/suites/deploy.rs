//! Deployment: the plain-HTTP redirect listener and HSTS.

use crate::common::*;

#[tokio::test]
async fn plain_http_only_redirects_and_https_sends_hsts() {
    let redirect_port = free_port();
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
    let port = free_port();
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
    assert!(
        context
            .iter()
            .any(|p| p == Path::new("src/bin/mcp-edge/main.rs"))
    );
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

/// Every document under config/kubernetes/, by (kind, name).
fn manifests() -> std::collections::BTreeMap<(String, String), Yaml> {
    let mut docs = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(root().join("config/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let rel = path
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .to_string();
            for doc in yaml(&rel) {
                if let (Some(kind), Some(name)) =
                    (doc["kind"].as_str(), doc["metadata"]["name"].as_str())
                {
                    let key = (kind.to_owned(), name.to_owned());
                    assert!(!docs.contains_key(&key), "{key:?} twice");
                    docs.insert(key, doc.clone());
                }
            }
        }
    }
    docs
}

fn get<'a>(
    docs: &'a std::collections::BTreeMap<(String, String), Yaml>,
    kind: &str,
    name: &str,
) -> &'a Yaml {
    docs.get(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name} in config/kubernetes"))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or_default()
}

/// A container's env entries by name, in order.
fn env_entries(c: &Yaml) -> Vec<(String, Yaml)> {
    list(&c["env"])
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn env_value(c: &Yaml, name: &str) -> String {
    env_entries(c)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, e)| e["value"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("env {name} with a value"))
}

/// The secret volume mounted read-only (no subPath) at the folder holding `file`.
fn secret_mount_for(pod: &Yaml, c: &Yaml, file: &str) -> String {
    let dir = Path::new(file).parent().unwrap().to_str().unwrap();
    let mount = list(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("nothing mounted at {dir} for {file}"));
    assert_eq!(mount["readOnly"].as_bool(), Some(true), "{dir}");
    assert!(mount["subPath"].is_badvalue(), "subPath defeats rotation");
    let name = mount["name"].as_str().unwrap();
    let volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap();
    volume["secret"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("{dir} is not a Secret volume"))
        .to_owned()
}

fn assert_hardened_container(c: &Yaml, what: &str) {
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}");
    assert_eq!(
        sc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{what}"
    );
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
    assert!(
        c["resources"]["limits"]["memory"].as_str().is_some(),
        "{what}"
    );
    assert!(c["resources"]["limits"]["cpu"].as_str().is_some(), "{what}");
}

fn assert_non_root_pod(pod: &Yaml, what: &str) {
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true),
        "{what}"
    );
    assert!(
        pod["securityContext"]["runAsUser"].as_i64().unwrap() > 0,
        "{what}"
    );
    assert_eq!(
        pod["automountServiceAccountToken"].as_bool(),
        Some(false),
        "{what}"
    );
}

#[test]
fn kubernetes_manifests_are_hardened_probed_and_autoscaled() {
    let docs = manifests();
    let d = get(&docs, "Deployment", "mcp-edge");
    let pod = &d["spec"]["template"]["spec"];
    assert_non_root_pod(pod, "mcp-edge");
    let c = &pod["containers"][0];
    assert_hardened_container(c, "mcp-edge");
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert!(
        list(&c["ports"])
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(8443))
    );
    // Secrets: whole Secret volumes, read-only, no subPath (subPath mounts never see
    // updates, so rotation would need a restart).
    let mut secret_volumes = 0;
    for v in list(&pod["volumes"])
        .iter()
        .filter(|v| !v["secret"].is_badvalue())
    {
        secret_volumes += 1;
        let name = v["name"].as_str().unwrap();
        let mount = list(&c["volumeMounts"])
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("secret volume {name} is not mounted"));
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{name}");
        assert!(
            mount["subPath"].is_badvalue(),
            "{name}: subPath defeats rotation"
        );
    }
    assert!(secret_volumes >= 1);
    assert_eq!(
        secret_mount_for(pod, c, "/run/secrets/api_keys"),
        "mcp-edge-secrets"
    );

    let svc = get(&docs, "Service", "mcp-edge");
    assert_eq!(svc["spec"]["type"].as_str(), Some("ClusterIP"));
    assert_eq!(svc["spec"]["ports"][0]["port"].as_i64(), Some(443));
    assert_eq!(
        list(&svc["spec"]["ports"]).len(),
        1,
        "only HTTPS is exposed"
    );
    let hpa = get(&docs, "HorizontalPodAutoscaler", "mcp-edge");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        d["metadata"]["name"].as_str()
    );
    assert_eq!(hpa["spec"]["minReplicas"].as_i64(), Some(2));
    assert_eq!(hpa["spec"]["maxReplicas"].as_i64(), Some(10));
    // The ConfigMap's edge.toml is a valid configuration.
    let toml_text = get(&docs, "ConfigMap", "mcp-edge-config")["data"]["edge.toml"]
        .as_str()
        .unwrap();
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

    // kustomization.yaml applies every manifest (the Secret is created by hand).
    let kustomization = &yaml("config/kubernetes/kustomization.yaml")[0];
    let mut listed = strs(&kustomization["resources"]);
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(root().join("config/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml" && n != "secret.example.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);
}

#[test]
fn kubernetes_pods_reach_each_other_on_the_peer_port_and_share_redis() {
    let docs = manifests();
    let d = get(&docs, "Deployment", "mcp-edge");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];

    // The pod's IP from the downward API, defined before the variable that uses it
    // (Kubernetes expands $(VAR) only from earlier entries).
    let env = env_entries(c);
    let pos = |n: &str| env.iter().position(|(name, _)| name == n);
    let pod_ip = &env[pos("POD_IP").expect("POD_IP")].1;
    assert_eq!(
        pod_ip["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
    assert!(pos("POD_IP") < pos("MCP_PEER_ADVERTISE"));
    assert_eq!(env_value(c, "MCP_PEER_ADVERTISE"), "$(POD_IP):8444");
    assert_eq!(env_value(c, "MCP_PEER_LISTEN"), "0.0.0.0:8444");
    let peer_port = list(&c["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some("peer"))
        .expect("a port named peer");
    assert_eq!(peer_port["containerPort"].as_i64(), Some(8444));

    // Key ring and Redis password: files from Secrets, read-only.
    let ring = env_value(c, "MCP_SESSION_KEYS_FILE");
    assert_eq!(ring, "/run/secrets/session_keys");
    assert_eq!(secret_mount_for(pod, c, &ring), "mcp-edge-secrets");
    let password = env_value(c, "MCP_REDIS_PASSWORD_FILE");
    let redis_secret = secret_mount_for(pod, c, &password);
    assert_ne!(
        redis_secret, "mcp-edge-secrets",
        "Redis gets its own Secret, not the TLS key"
    );
    let examples = yaml("config/kubernetes/secret.example.yaml");
    let example = |name: &str| {
        examples
            .iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("secret.example.yaml lacks {name}"))
            .clone()
    };
    let file_name = |p: &str| {
        Path::new(p)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        example("mcp-edge-secrets")["stringData"][file_name(&ring).as_str()]
            .as_str()
            .is_some()
    );
    assert!(
        example(&redis_secret)["stringData"][file_name(&password).as_str()]
            .as_str()
            .is_some()
    );

    // Redis-backed limits; the fallback share matches a replica count the HPA runs.
    assert_eq!(env_value(c, "MCP_RATE_LIMIT_STORE"), "redis");
    let hpa = get(&docs, "HorizontalPodAutoscaler", "mcp-edge");
    let replicas: i64 = env_value(c, "MCP_REPLICAS").parse().unwrap();
    assert!(
        (hpa["spec"]["minReplicas"].as_i64().unwrap()
            ..=hpa["spec"]["maxReplicas"].as_i64().unwrap())
            .contains(&replicas),
        "MCP_REPLICAS={replicas} outside the HPA's range"
    );
    let url = env_value(c, "MCP_REDIS_URL");
    let host_port = url.strip_prefix("redis://").expect("redis:// URL");
    assert!(!host_port.contains('@'), "no password in the URL: {url}");
    let (host, port) = host_port.split_once(':').unwrap();
    let redis_svc = get(&docs, "Service", host);
    assert_eq!(
        redis_svc["spec"]["ports"][0]["port"].as_i64(),
        port.parse().ok()
    );

    // The headless Service for the peer port selects the same pods.
    let peers = get(&docs, "Service", "mcp-edge-peers");
    assert_eq!(peers["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(peers["spec"]["ports"][0]["port"].as_i64(), Some(8444));
    assert_eq!(
        peers["spec"]["ports"][0]["targetPort"].as_str(),
        Some("peer")
    );
    assert_eq!(
        peers["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );

    // Only mcp-edge pods may open the peer port.
    let policy = get(&docs, "NetworkPolicy", "mcp-edge");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], *labels);
    let rules = list(&policy["spec"]["ingress"]);
    let opens = |r: &Yaml, port: i64| {
        list(&r["ports"])
            .iter()
            .any(|p| p["port"].as_i64() == Some(port))
    };
    let peer_rules: Vec<&Yaml> = rules.iter().filter(|r| opens(r, 8444)).collect();
    assert_eq!(peer_rules.len(), 1, "one rule opens the peer port");
    let from = list(&peer_rules[0]["from"]);
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["podSelector"]["matchLabels"], *labels);
    assert!(from[0]["namespaceSelector"].is_badvalue());
    assert!(
        rules.iter().any(|r| opens(r, 8443)),
        "HTTPS stays reachable"
    );

    // The small Redis: non-root, read-only, memory only, password from the Secret.
    let redis = get(&docs, "Deployment", "mcp-edge-redis");
    let rpod = &redis["spec"]["template"]["spec"];
    assert_non_root_pod(rpod, "redis");
    let rc = &rpod["containers"][0];
    assert_hardened_container(rc, "redis");
    assert_eq!(
        secret_mount_for(rpod, rc, "/run/secrets/redis_password"),
        redis_secret
    );
    assert!(
        list(&rpod["volumes"])
            .iter()
            .all(|v| v["persistentVolumeClaim"].is_badvalue()),
        "rate-limit counters need no persistence"
    );
    let script = strs(&rc["command"]).join(" ");
    assert!(script.contains("requirepass"), "{script}");
    assert!(script.contains("--save ''") && script.contains("--appendonly no"));
    assert_eq!(
        redis_svc["spec"]["selector"],
        redis["spec"]["template"]["metadata"]["labels"]
    );
    let redis_policy = get(&docs, "NetworkPolicy", "mcp-edge-redis");
    assert_eq!(
        redis_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        *labels
    );
}

#[tokio::test]
async fn the_example_upstream_requires_its_token_and_serves_tools() {
    let dir = tempfile::tempdir().unwrap();
    let token = "upstream-token-0123456789abcdef";
    let token_file = dir.path().join("upstream_token");
    std::fs::write(&token_file, token).unwrap();
    let port = free_port();
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

// ---- Several replicas: the Compose `replicas` profile, HAProxy, Redis ----

/// `${NAME:-default}` → default (what Compose substitutes with an unset NAME).
fn default_of(value: &str) -> String {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default(),
        None => value.to_owned(),
    }
}

fn profiles(service: &Yaml) -> Vec<String> {
    strs(&service["profiles"])
}

fn env_of(service: &Yaml) -> std::collections::BTreeMap<String, String> {
    service["environment"]
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_i64().map(|i| i.to_string()))
                        .unwrap_or_default();
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_hardened_service(s: &Yaml, what: &str) {
    assert_eq!(s["read_only"].as_bool(), Some(true), "{what}");
    assert!(non_root_user(s["user"].as_str().unwrap()), "{what}");
    assert_eq!(strs(&s["cap_drop"]), ["ALL"], "{what}");
    assert_eq!(
        strs(&s["security_opt"]),
        ["no-new-privileges:true"],
        "{what}"
    );
    assert_eq!(s["init"].as_bool(), Some(true), "{what}");
    let limits = &s["deploy"]["resources"]["limits"];
    assert!(
        limits["cpus"].as_str().is_some() && limits["memory"].as_str().is_some(),
        "{what}"
    );
    assert_eq!(s["restart"].as_str(), Some("unless-stopped"), "{what}");
}

const EDGES: [&str; 3] = ["edge-1", "edge-2", "edge-3"];

#[test]
fn compose_replicas_profile_runs_three_edges_behind_haproxy_with_redis() {
    let doc = &yaml("docker-compose.yml")[0];
    let services = doc["services"].as_hash().unwrap();
    let in_profile = |p: &str| -> Vec<String> {
        let mut v: Vec<String> = services
            .iter()
            .filter(|(_, s)| profiles(s).iter().any(|x| x == p))
            .map(|(k, _)| k.as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        in_profile("replicas"),
        ["edge-1", "edge-2", "edge-3", "haproxy", "redis"]
    );
    // Without `--profile`, .env's COMPOSE_PROFILES=single runs the single edge; a
    // `--profile replicas` flag replaces that list, so the two never compete for 443.
    assert_eq!(in_profile("single"), ["edge"]);
    assert!(
        read(".env.example")
            .lines()
            .any(|l| l.trim() == "COMPOSE_PROFILES=single")
    );
    let s = |name: &str| &doc["services"][name];
    for shared in ["secrets-init", "upstream"] {
        assert!(profiles(s(shared)).is_empty(), "{shared} runs in both");
    }

    // The lb network: a fixed subnet the edges trust for PROXY headers.
    let subnet = default_of(
        doc["networks"]["lb"]["ipam"]["config"][0]["subnet"]
            .as_str()
            .expect("lb network subnet"),
    );
    assert!(subnet.contains('/'), "{subnet}");

    let single_volumes = strs(&s("edge")["volumes"]);
    let first = env_of(s("edge-1"));
    for (i, name) in EDGES.iter().enumerate() {
        let edge = s(name);
        assert_hardened_service(edge, name);
        assert_eq!(
            strs(&edge["healthcheck"]["test"]),
            ["CMD", "/usr/local/bin/mcp-edge", "healthcheck"]
        );
        assert!(
            edge["ports"].is_badvalue(),
            "{name}: clients come via HAProxy"
        );
        assert_eq!(edge["env_file"].as_str(), Some(".env"));
        assert_eq!(strs(&edge["networks"]), ["lb", "internal"], "{name}");
        let env = env_of(edge);
        assert_eq!(env["MCP_PEER_ADVERTISE"], format!("edge-{}:8444", i + 1));
        assert_eq!(env["MCP_PEER_LISTEN"], "0.0.0.0:8444");
        assert_eq!(default_of(&env["MCP_PROXY_PROTOCOL_FROM"]), subnet);
        assert_eq!(env["MCP_RATE_LIMIT_STORE"], "redis");
        assert!(env["MCP_REDIS_URL"].starts_with("redis://redis:"));
        assert_eq!(env["MCP_REPLICAS"], EDGES.len().to_string());
        // Only file paths for secrets, never values.
        for k in env.keys() {
            if k.contains("KEY") || k.contains("TOKEN") || k.contains("PASSWORD") {
                assert!(k.ends_with("_FILE"), "{name}: {k} inline");
            }
        }
        // Same key ring, same keys file, same certificate: the same volumes as the
        // single edge (generated once by secrets-init), plus the Redis password.
        let mut others = env.clone();
        others.remove("MCP_PEER_ADVERTISE");
        let mut first_others = first.clone();
        first_others.remove("MCP_PEER_ADVERTISE");
        assert_eq!(others, first_others, "{name} differs from edge-1");
        let volumes = strs(&edge["volumes"]);
        for v in single_volumes.iter().filter(|v| !v.starts_with("acme:")) {
            assert!(volumes.contains(v), "{name} lacks {v}");
        }
        let mounted = |file: &str| {
            let dir = Path::new(file)
                .parent()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            volumes
                .iter()
                .find(|v| v.ends_with(&format!(":{dir}:ro")))
                .unwrap_or_else(|| panic!("{name}: {file} is not on a read-only volume"))
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(mounted(&env["MCP_SESSION_KEYS_FILE"]), "edge-secrets");
        assert_eq!(mounted("/run/secrets/api_keys"), "edge-secrets");
        assert_eq!(mounted(&env["MCP_REDIS_PASSWORD_FILE"]), "redis-secrets");
    }
    assert!(
        read(".env.example").contains("MCP_API_KEYS_FILE=/run/secrets/api_keys"),
        "the shared keys file comes from .env"
    );

    // secrets-init writes the key ring next to the keys, the password to Redis' volume.
    let init = s("secrets-init");
    let cmd = strs(&init["command"]);
    let arg = |flag: &str| {
        let i = cmd.iter().position(|a| a == flag).unwrap();
        cmd[i + 1].clone()
    };
    let init_volumes = strs(&init["volumes"]);
    assert!(init_volumes.contains(&format!("edge-secrets:{}", arg("--dir"))));
    assert!(init_volumes.contains(&format!("redis-secrets:{}", arg("--redis-dir"))));

    // HAProxy: the official Debian-based image, alone with the edges on lb.
    let haproxy = s("haproxy");
    assert_hardened_service(haproxy, "haproxy");
    let image = haproxy["image"].as_str().unwrap();
    assert!(
        image.starts_with("haproxy:") && !image.contains("alpine"),
        "{image}"
    );
    assert_eq!(strs(&haproxy["networks"]), ["lb"]);
    assert!(strs(&haproxy["ports"]).iter().any(|p| p.ends_with(":8443")));
    let cfg = &haproxy["configs"][0];
    assert_eq!(
        cfg["target"].as_str(),
        Some("/usr/local/etc/haproxy/haproxy.cfg")
    );
    assert_eq!(
        doc["configs"][cfg["source"].as_str().unwrap()]["file"].as_str(),
        Some("./config/haproxy/haproxy.cfg")
    );
    let depends: Vec<String> = strs(&haproxy["depends_on"]);
    assert_eq!(depends, EDGES);

    // Redis: hardened, password from its own volume (never the edge's TLS key).
    let redis = s("redis");
    assert_hardened_service(redis, "redis");
    assert_eq!(strs(&redis["networks"]), ["internal"]);
    assert!(redis["ports"].is_badvalue());
    assert_eq!(strs(&redis["volumes"]), ["redis-secrets:/run/secrets:ro"]);

    // Production override: the replicas and Redis take real Docker secrets too.
    let prod = &yaml("docker-compose.prod.yml")[0];
    let secret_names = |svc: &Yaml| -> Vec<String> {
        list(&svc["secrets"])
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| s["source"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    for name in EDGES {
        let names = secret_names(&prod["services"][name]);
        for want in [
            "api_keys",
            "tls_cert",
            "tls_key",
            "session_keys",
            "redis_password",
        ] {
            assert!(names.iter().any(|n| n == want), "{name} lacks {want}");
        }
    }
    assert_eq!(secret_names(&prod["services"]["redis"]), ["redis_password"]);
    for s in ["session_keys", "redis_password"] {
        assert_eq!(
            prod["secrets"][s]["file"].as_str(),
            Some(format!("./secrets/{s}").as_str())
        );
    }
}

#[test]
fn haproxy_config_is_tcp_round_robin_with_proxy_v2_to_every_edge() {
    let cfg = read("config/haproxy/haproxy.cfg");
    let lines: Vec<&str> = cfg
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.contains(&"mode tcp"));
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("mode ") && *l != "mode tcp"),
        "TCP only: the edges terminate TLS"
    );
    assert!(lines.contains(&"balance roundrobin"));
    assert!(!lines.iter().any(|l| l.starts_with("daemon")), "foreground");
    let servers: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("server "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = servers.iter().map(|s| s[1]).collect();
    assert_eq!(names, EDGES, "one server line per Compose edge");
    for s in &servers {
        assert_eq!(s[2], format!("{}:8443", s[1]), "{s:?}");
        assert!(s.contains(&"send-proxy-v2"), "{s:?} sends no PROXY v2");
    }
    let defaults = lines
        .iter()
        .find(|l| l.starts_with("default-server"))
        .expect("default-server");
    for opt in ["check", "check-send-proxy"] {
        assert!(defaults.split_whitespace().any(|w| w == opt), "{opt}");
    }

    // And HAProxy itself accepts it. The edges' names do not resolve outside Compose;
    // `init-addr none` turns that into a warning, and that is the only one allowed.
    let Ok(out) = std::process::Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(root().join("config/haproxy/haproxy.cfg"))
        .output()
    else {
        eprintln!("SKIPPED haproxy -c: no haproxy binary (apt-get install haproxy)");
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "haproxy -c failed:\n{text}");
    for l in text
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("ALERT"))
    {
        assert!(l.contains("could not resolve address"), "{l}");
    }
}

/// The `sh -c` script a service or container runs, with `$$` unescaped as Compose
/// and Kubernetes do.
fn redis_script(command: &Yaml) -> String {
    let cmd = strs(command);
    assert_eq!(&cmd[..2], ["sh", "-c"], "{cmd:?}");
    cmd[2].replace("$$", "$")
}

/// Run the shipped Redis start-up script against Debian's redis-server on a free
/// loopback port, with the secret and /tmp moved into a temporary folder.
async fn start_redis_script(script: &str) -> Option<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no redis-server (apt-get install redis-server)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let password = "0123abcd".repeat(8);
    std::fs::write(secrets.join("redis_password"), &password).unwrap();
    let port = free_port();
    let script = format!(
        "{} --port {port} --bind 127.0.0.1",
        // /tmp first: the temporary folder is itself under /tmp.
        script
            .replace("/tmp/", &format!("{}/", tmp.display()))
            .replace("/run/secrets/", &format!("{}/", secrets.display()))
    );
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ask = async |lines: &[String]| -> String {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return String::new();
        };
        let mut req = String::new();
        for l in lines {
            req.push_str(l);
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = vec![0u8; 256];
        let mut got = String::new();
        while got.matches("\r\n").count() < lines.len() {
            match tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut out)).await {
                Ok(Ok(n)) if n > 0 => got.push_str(&String::from_utf8_lossy(&out[..n])),
                _ => break,
            }
        }
        got
    };
    let up = eventually(std::time::Duration::from_secs(10), async || {
        ask(&["PING".into()]).await.starts_with("-NOAUTH")
    })
    .await;
    assert!(
        up,
        "redis did not start, or answered without a password: {script}"
    );
    let authed = ask(&[format!("AUTH {password}"), "PING".into()]).await;
    assert_eq!(authed, "+OK\r\n+PONG\r\n");
    assert!(
        ask(&["AUTH wrong".into()]).await.starts_with("-WRONGPASS"),
        "a wrong password is refused"
    );
    // The password is in no process's arguments, and the config it went into is private.
    let pid = child.id().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("redis-server"),
        "sh exec'd redis-server (signals reach it)"
    );
    assert!(!String::from_utf8_lossy(&cmdline).contains(&password));
    use std::os::unix::fs::PermissionsExt;
    let conf = std::fs::read_dir(&tmp).unwrap().next().unwrap().unwrap();
    assert_eq!(conf.metadata().unwrap().permissions().mode() & 0o077, 0);
    child.kill().await.unwrap();
    Some(())
}

#[tokio::test]
async fn the_shipped_redis_commands_require_the_generated_password() {
    let compose = &yaml("docker-compose.yml")[0];
    start_redis_script(&redis_script(&compose["services"]["redis"]["command"])).await;
    let docs = manifests();
    let k8s = get(&docs, "Deployment", "mcp-edge-redis");
    start_redis_script(&redis_script(
        &k8s["spec"]["template"]["spec"]["containers"][0]["command"],
    ))
    .await;
}
/// Every `MCP_*` name in the Compose and Kubernetes files is a variable the server
/// reads: a misspelt one would be silently ignored in production. (Fails until the
/// issue 9 cluster/Redis keys and the issue 8 proxy_protocol_from key are in KEYS.)
#[test]
fn deployment_files_use_only_variables_the_server_reads() {
    let mut known: std::collections::BTreeSet<String> = mcp_edge::config::KEYS
        .iter()
        .map(|k| k.env.to_owned())
        .collect();
    known.insert(mcp_edge::config::ENV_CONFIG_FILE.to_owned());
    let mut files = vec![
        "docker-compose.yml".to_owned(),
        "docker-compose.prod.yml".to_owned(),
    ];
    for entry in std::fs::read_dir(root().join("config/kubernetes")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            files.push(format!("config/kubernetes/{name}"));
        }
    }
    let mut unknown = Vec::new();
    for f in &files {
        let text = read(f);
        for (i, _) in text.match_indices("MCP_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !known.contains(&name) {
                unknown.push(format!("{f}: {name}"));
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(unknown.is_empty(), "not read by mcp-edge: {unknown:#?}");
}
