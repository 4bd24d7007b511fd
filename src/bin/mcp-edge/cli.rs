//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use mcp_edge::config::FlagOverrides;

#[derive(Debug, Parser)]
#[command(
    name = "mcp-edge",
    version,
    about = "A TLS edge server for the Model Context Protocol"
)]
pub struct Cli {
    /// TOML config file (default: $MCP_EDGE_CONFIG; none = dev profile).
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that override the file and the environment.
#[derive(Debug, Args, Default)]
pub struct Overrides {
    /// Address to bind (server.host / MCP_HOST).
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Port to listen on (server.port / MCP_PORT).
    #[arg(long, global = true)]
    pub port: Option<String>,
    /// streamable-http or stdio (server.transport / MCP_TRANSPORT).
    #[arg(long, global = true)]
    pub transport: Option<String>,
    /// Directory of documents to serve (docs.dir / MCP_DOCS_DIR).
    #[arg(long, global = true)]
    pub docs_dir: Option<String>,
    /// json or pretty (log.format / MCP_LOG_FORMAT).
    #[arg(long, global = true)]
    pub log_format: Option<String>,
}

impl Overrides {
    pub fn to_flags(&self) -> FlagOverrides {
        let mut flags = Vec::new();
        let mut add = |key: &'static str, flag: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                flags.push((key, flag, v.clone()));
            }
        };
        add("server.host", "--host", &self.host);
        add("server.port", "--port", &self.port);
        add("server.transport", "--transport", &self.transport);
        add("docs.dir", "--docs-dir", &self.docs_dir);
        add("log.format", "--log-format", &self.log_format);
        FlagOverrides(flags)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Validate the configuration and secret files, print the effective config (no secrets).
    CheckConfig,
    /// Print `sha256:<hex>` for a key read from stdin, for the API keys file.
    HashKey,
    /// Print a new random session-id sealing key (a line for cluster.key_ring_file).
    GenSessionKey,
    /// Print a new P-256 private key (PKCS#8 PEM) for auth.oauth.signing_key_file.
    GenOauthKey,
    /// Probe the local /health endpoint; exit 0 if healthy, 1 otherwise (Docker HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Drive tools/call over HTTPS and print requests/s and latency percentiles.
    Bench(crate::bench::BenchArgs),
    /// Create missing secret files (API key, self-signed certificate, upstream token) 0400.
    InitSecrets(mcp_edge::init_secrets::InitSecretsArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to probe (default: the configured port on loopback).
    #[arg(long)]
    pub url: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}
