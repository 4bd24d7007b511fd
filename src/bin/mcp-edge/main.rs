//! The `mcp-edge` binary: parse the CLI, load config (exit 64 when bad), run.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

mod bench;
mod cli;

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};

use crate::cli::{Cli, Command};
use mcp_edge::app::{self, Running};
use mcp_edge::config::{self, Config, ProcessEnv, Sources, Transport};

/// BSD sysexits EX_USAGE / EX_CONFIG-style code for a bad configuration.
const EXIT_CONFIG: u8 = 64;

fn load_config(cli: &Cli) -> Result<Config, ExitCode> {
    config::load(Sources {
        file: cli.config.clone(),
        env: &ProcessEnv,
        flags: cli.overrides.to_flags(),
    })
    .map_err(|errors| {
        eprint!("mcp-edge: {errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.as_ref().unwrap_or(&Command::Serve);
    match command {
        Command::HashKey => return hash_key(),
        Command::GenSessionKey => {
            println!("{}", mcp_edge::cluster::seal::generate_key().as_str());
            return ExitCode::SUCCESS;
        }
        Command::GenOauthKey => {
            print!(
                "{}",
                mcp_edge::auth::edge_token::generate_signing_key().as_str()
            );
            return ExitCode::SUCCESS;
        }
        Command::InitSecrets(args) => {
            return match mcp_edge::init_secrets::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcp-edge init-secrets: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Bench(args) => {
            return runtime().block_on(async {
                match bench::run(args).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("mcp-edge bench: {e}");
                        ExitCode::FAILURE
                    }
                }
            });
        }
        Command::Healthcheck(args) => return healthcheck(&cli, args),
        Command::Config(cli::ConfigCommand::Reference { format }) => {
            print!(
                "{}",
                match format {
                    cli::ReferenceFormat::Markdown => config::reference::markdown(),
                    cli::ReferenceFormat::Json => config::reference::json(),
                }
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        Command::CheckConfig => check_config(&config),
        _ => runtime().block_on(async {
            // In the runtime: the trace exporter runs on it.
            let telemetry = mcp_edge::telemetry::init(&config);
            let code = serve(config).await;
            telemetry.shutdown().await;
            code
        }),
    }
}

/// Probe `/health`. Needs only the address and scheme, not a valid whole config: the
/// container's secrets may be missing or mid-rotation while the server runs fine.
fn healthcheck(cli: &Cli, args: &cli::HealthcheckArgs) -> ExitCode {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let raw = config::load_raw(Sources {
                file: cli.config.clone(),
                env: &ProcessEnv,
                flags: cli.overrides.to_flags(),
            });
            let target = match raw {
                Ok((raw, errors)) => {
                    let relevant = errors
                        .into_iter()
                        .find(|e| mcp_edge::healthcheck::KEYS_READ.contains(&e.key.as_str()));
                    match relevant {
                        Some(e) => Err(format!("{e}\n")),
                        None => mcp_edge::healthcheck::default_url(&raw),
                    }
                }
                Err(errors) => Err(errors.to_string()),
            };
            match target {
                Ok(url) => url,
                Err(e) => {
                    eprint!("mcp-edge healthcheck: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
    };
    runtime().block_on(async {
        match mcp_edge::healthcheck::probe(&url, args.timeout).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}

fn hash_key() -> ExitCode {
    let mut input = String::new();
    if std::io::stdin().read_to_string(&mut input).is_err() {
        eprintln!("mcp-edge hash-key: cannot read the key from stdin");
        return ExitCode::FAILURE;
    }
    let key = SecretString::from(input.trim_end_matches(['\r', '\n']).to_owned());
    if key.expose_secret().is_empty() || key.expose_secret().contains(char::is_whitespace) {
        eprintln!("mcp-edge hash-key: give one key without spaces on stdin");
        return ExitCode::FAILURE;
    }
    if key.expose_secret().len() < mcp_edge::auth::api_keys::MIN_KEY_LEN {
        eprintln!(
            "mcp-edge hash-key: warning: keys shorter than {} characters can be guessed",
            mcp_edge::auth::api_keys::MIN_KEY_LEN
        );
    }
    println!("{}", mcp_edge::auth::api_keys::hash_key(&key));
    ExitCode::SUCCESS
}

fn check_config(config: &Config) -> ExitCode {
    // The same checks `serve` makes before it binds anything.
    let ok = match mcp_edge::preflight::check(config) {
        Ok(loaded) => {
            for note in &loaded.notes {
                eprintln!("{note}");
            }
            true
        }
        Err(problems) => {
            report(&problems);
            false
        }
    };
    idp_reachable(config);
    println!("{}", config.to_pretty_json());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

/// Whether the OpenID provider of `[auth.oauth.oidc]` answers discovery now: a
/// warning when not (it may be reachable from the deployment but not from here).
fn idp_reachable(config: &Config) {
    let Some(oauth) = &config.auth.oauth else {
        return;
    };
    let Some(oidc) = &oauth.oidc else { return };
    let idp = match mcp_edge::oauth::idp::Idp::new(oidc.clone(), &oauth.issuer) {
        Ok(idp) => idp,
        Err(e) => return eprintln!("mcp-edge: warning: auth.oauth.oidc: {e}"),
    };
    match runtime().block_on(idp.probe()) {
        Ok(()) => eprintln!(
            "oauth: identity provider {} answers discovery; register {} there",
            oidc.issuer,
            idp.redirect_uri()
        ),
        Err(e) => eprintln!(
            "mcp-edge: warning: auth.oauth.oidc.issuer {}: {e} (not fatal: sign-ins through it fail until it answers)",
            oidc.issuer
        ),
    }
}

/// One line per problem, as `check-config` and `serve` both print them.
fn report(problems: &mcp_edge::preflight::Problems) {
    for problem in &problems.0 {
        eprintln!("mcp-edge: {problem}");
    }
}

/// Print the dev profile's key once, to the terminal only (never to the log).
fn announce_dev(running: &Running) {
    let Some(key) = running.dev_key() else {
        return;
    };
    let cert_note = match running.dev_cert_pem() {
        Some(pem) => {
            let path = std::env::temp_dir().join("mcp-edge-dev-cert.pem");
            match std::fs::write(&path, pem) {
                Ok(()) => format!(
                    "self-signed certificate (trust it in clients): {}",
                    path.display()
                ),
                Err(e) => format!("self-signed certificate (could not write it out: {e})"),
            }
        }
        None => String::new(),
    };
    let url = running.mcp_url();
    let key = key.expose_secret();
    let banner = format!(
        "\n  mcp-edge dev profile (no config given)\n\n    endpoint:  {url}\n    API key:   {key}\n    {cert_note}\n\n  Connect with header  Authorization: Bearer {key}\n  This key lives only in this process; give a config file for a real deployment.\n"
    );
    if std::io::stderr().is_terminal() {
        eprintln!("{banner}");
    } else {
        // Not a terminal (e.g. `cargo run` piped): still the only place the key appears.
        eprintln!("{banner}");
    }
}

async fn serve(config: Config) -> ExitCode {
    if config.server.transport == Transport::Stdio {
        return match app::serve_stdio(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "stdio transport failed");
                ExitCode::FAILURE
            }
        };
    }
    let running = match app::start(config).await {
        Ok(r) => r,
        Err(app::StartError::Preflight(problems)) => {
            report(&problems);
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("mcp-edge: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    announce_dev(&running);
    wait_for_signal().await;
    let shutdown = running.shutdown();
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => ExitCode::SUCCESS,
        () = wait_for_signal() => {
            tracing::warn!("second signal: exiting now");
            ExitCode::from(130)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
