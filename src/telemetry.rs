//! Logs: tracing to stderr (JSON or pretty). The one line per request is written by
//! `server::access_log`.

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. `RUST_LOG`, when set, wins over the configured level.
pub fn init(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    // A plain level keeps chatty dependencies (index commits, per-session notices) quiet.
    let level = if log.level.contains('=') {
        log.level.clone()
    } else {
        format!("{},tantivy=warn,rmcp=warn", log.level)
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
