//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use mcp_edge::config::{FlagOverrides, KEYS};

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
    /// `(key, flag, value)` for each flag given; the flag's name is the one the key
    /// list ([`KEYS`]) gives, which the reference prints and a test checks against clap.
    pub fn to_flags(&self) -> FlagOverrides {
        let mut flags = Vec::new();
        let mut add = |key: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                let flag = KEYS
                    .iter()
                    .find(|k| k.key == key)
                    .and_then(|k| k.flag)
                    .unwrap_or("(a flag)");
                flags.push((key, flag, v.clone()));
            }
        };
        add("server.host", &self.host);
        add("server.port", &self.port);
        add("server.transport", &self.transport);
        add("docs.dir", &self.docs_dir);
        add("log.format", &self.log_format);
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
    /// About the configuration itself.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every key: TOML path, environment variable, flag, type, default, whether
    /// it reloads, and its meaning.
    Reference {
        #[arg(long, value_enum, default_value = "markdown")]
        format: ReferenceFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReferenceFormat {
    Markdown,
    Json,
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

#[cfg(test)]
mod tests {
    use clap::{Args, CommandFactory};

    use super::*;

    /// Every flag the key list names is a real flag setting that key, and there is no
    /// override flag the list (and so the reference) does not name.
    #[test]
    fn the_override_flags_are_the_ones_the_key_list_names() {
        let named: Vec<_> = KEYS.iter().filter_map(|k| Some((k.key, k.flag?))).collect();
        let mut argv = vec!["mcp-edge".to_owned()];
        for (_, flag) in &named {
            argv.push(flag.to_string());
            argv.push("x".to_owned());
        }
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let given: Vec<_> = cli
            .overrides
            .to_flags()
            .0
            .into_iter()
            .map(|(key, flag, _)| (key, flag))
            .collect();
        for pair in &named {
            assert!(given.contains(pair), "{pair:?} is in KEYS but not a flag");
        }
        let overrides = Overrides::augment_args(clap::Command::new("x"));
        assert_eq!(
            overrides.get_arguments().count(),
            named.len(),
            "an override flag is missing from KEYS (give its key .flag(\"--name\"))"
        );
        Cli::command().debug_assert();
    }
}
