//! The `mcp-edge bench` command line, and the API key it names.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

const DEFAULT_KEY_ENV: &str = "MCP_BENCH_KEY";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Protocol 2025-06-18: initialize once per worker, then reuse the session.
    Session,
    /// Protocol 2026-07-28: no handshake, no session; per-request `_meta` and headers.
    Stateless,
}

impl BenchMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            BenchMode::Session => "session",
            BenchMode::Stateless => "stateless",
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// MCP endpoint.
    #[arg(long, default_value = "https://localhost:8443/mcp")]
    pub url: String,
    /// Send the measured tools/calls here instead of --url (sessions are still opened
    /// at --url): with two replicas, measures a call forwarded to the session's owner.
    #[arg(long, value_name = "URL")]
    pub calls_url: Option<String>,
    /// File holding the bearer API key (one line). Takes precedence over --key-env.
    #[arg(long, value_name = "PATH", conflicts_with = "key_env")]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the bearer API key [default: MCP_BENCH_KEY].
    #[arg(long, value_name = "NAME")]
    pub key_env: Option<String>,
    /// PEM file of the CA (or self-signed certificate) to trust instead of the system roots.
    #[arg(long, value_name = "PATH", conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server certificate (for the dev self-signed certificate).
    #[arg(long)]
    pub insecure: bool,
    /// Parallel workers, each with one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Measured run time [default: 10s, or unlimited when --requests is given].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Stop after this many measured requests (across all workers).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Unmeasured warm-up time before the measured run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: std::time::Duration,
    /// Per-request timeout (send to full reply).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// session (2025-06-18, Mcp-Session-Id) or stateless (2026-07-28, per-request _meta).
    #[arg(long, value_enum, default_value_t = BenchMode::Session)]
    pub mode: BenchMode,
    /// Tool to call.
    #[arg(long, default_value = "search_docs")]
    pub tool: String,
    /// Tool arguments, a JSON object.
    #[arg(long, default_value = r#"{"query":"mcp"}"#, value_parser = parse_json_object)]
    pub args: Map<String, Value>,
    /// Force HTTP/1.1 (default: let ALPN pick, normally h2).
    #[arg(long)]
    pub http1: bool,
    /// Also print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn parse_json_object(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object, e.g. {\"query\":\"mcp\"}".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Key(String),
    #[error("{failed} of {total} requests failed")]
    Failed { failed: u64, total: u64 },
}

pub(super) fn load_key(args: &BenchArgs) -> Result<SecretString, BenchError> {
    let raw = if let Some(path) = &args.key_file {
        std::fs::read_to_string(path).map_err(|e| {
            BenchError::Key(format!("cannot read --key-file {}: {e}", path.display()))
        })?
    } else {
        let name = args.key_env.as_deref().unwrap_or(DEFAULT_KEY_ENV);
        std::env::var(name).map_err(|_| {
            BenchError::Key(format!(
                "no API key: set {name} (or use --key-file PATH / --key-env NAME)"
            ))
        })?
    };
    let key = SecretString::from(raw.trim().to_owned());
    drop(SecretString::from(raw));
    if key.expose_secret().is_empty() || key.expose_secret().contains(char::is_whitespace) {
        return Err(BenchError::Key(
            "the API key is empty or holds whitespace (give exactly one key)".into(),
        ));
    }
    Ok(key)
}
