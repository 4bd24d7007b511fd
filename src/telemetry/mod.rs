//! Logs (tracing to stderr, JSON or pretty), traces over OTLP ([`otel`]) and the
//! audit trail ([`audit`]). The one line per request is written by
//! `server::access_log`.

pub mod audit;
mod lines;
pub mod otel;

use std::io::IsTerminal;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

/// What [`init`] started; [`Telemetry::shutdown`] flushes queued spans.
#[derive(Default)]
pub struct Telemetry {
    exporting: Option<otel::Exporting>,
    lines: Option<lines::LogLines>,
}

impl Telemetry {
    pub async fn shutdown(mut self) {
        if let Some(e) = self.exporting.take() {
            e.shutdown().await;
        }
    }
}

impl Drop for Telemetry {
    /// The last buffered log lines are written out however the process ends.
    fn drop(&mut self) {
        if let Some(lines) = &self.lines {
            lines.flush();
        }
    }
}

/// Install the global subscriber: the log output, plus the OTLP exporter when
/// `otel` is configured. `RUST_LOG`, when set, wins over the configured level.
/// Call inside the Tokio runtime (the exporter runs on it).
pub fn init(config: &Config) -> Telemetry {
    use tracing_subscriber::EnvFilter;
    let log = &config.log;
    // A plain level keeps chatty dependencies (index commits, per-session notices) quiet.
    let level = if log.level.contains('=') {
        log.level.clone()
    } else {
        format!("{},tantivy=warn,rmcp=warn", log.level)
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Trace spans are for the exporter only: never in log lines.
    let not_traces = Targets::new()
        .with_target(otel::TARGET, LevelFilter::OFF)
        .with_default(LevelFilter::TRACE);
    let logs_filter = filter.and(not_traces);
    let lines = lines::LogLines::start();
    let mut fmt = tracing_subscriber::fmt::layer().with_writer(lines.clone());
    // Colour codes only on a terminal: in a pipe or file (Docker, systemd, a log
    // shipper) they garble the stored lines, and formatting them cost about 5 % of
    // the instructions of a proxied call. On a terminal `NO_COLOR` still turns them off.
    if !std::io::stderr().is_terminal() {
        fmt = fmt.with_ansi(false);
    }
    let logs = match log.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_filter(logs_filter)
            .boxed(),
        LogFormat::Pretty => fmt.compact().with_filter(logs_filter).boxed(),
    };
    let mut problem = None;
    let (exporting, traces) = match config.otel.as_ref().map(otel::pipeline) {
        Some(Ok((exporting, tracer))) => {
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Spans start when the edge says (a parent from the MCP body's `_meta`
                // can still be set after the span was entered).
                .with_context_activation(false)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_level(false)
                .with_filter(Targets::new().with_target(otel::TARGET, LevelFilter::INFO));
            (Some(exporting), Some(layer))
        }
        Some(Err(e)) => {
            problem = Some(e);
            (None, None)
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    if let Some(e) = problem {
        tracing::error!(error = %e, "traces are not exported");
    } else if let Some(o) = &config.otel {
        tracing::info!(endpoint = %o.endpoint, protocol = ?o.protocol, sample_ratio = o.sample_ratio, "exporting traces");
    }
    Telemetry {
        exporting,
        lines: Some(lines),
    }
}
