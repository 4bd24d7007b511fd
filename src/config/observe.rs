//! `[log]` (the server's own log), `[otel]` (traces over OTLP) and `[audit]` (one
//! record per tool call, resource read and prompt get).
//!
//! The standard OpenTelemetry variables are honoured below the edge's own:
//! `MCP_OTEL_*` and flags win over `OTEL_*`, which win over the file. The exporter
//! itself also reads `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT` and `_COMPRESSION`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Choice, EnvSource, Errors, Layered, Origin, RawConfig, path_of};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtel {
    pub endpoint: Option<String>,
    pub protocol: Option<Choice<OtlpProtocol>>,
    pub sample_ratio: Option<f64>,
    pub max_traces_per_second: Option<u32>,
    pub headers_file: Option<String>,
    pub service_name: Option<String>,
    pub resource_attributes: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub output: Option<Choice<RawAuditOutput>>,
    pub file: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<u32>,
    pub log_arguments: Option<bool>,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// `otel.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Set when traces are exported (an endpoint is configured).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtelConfig {
    /// For `http/protobuf`, the full URL of the traces path (`…/v1/traces`).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Of traces started here; a sampled (or unsampled) parent is followed.
    pub sample_ratio: f64,
    /// New traces sampled per second at most (past it they are shed and counted);
    /// 0 for no limit.
    pub max_traces_per_second: u32,
    /// `name: value` lines sent with every export (a collector token): a secret file.
    pub headers_file: Option<PathBuf>,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
}

/// `audit.output`, as written (where the records go is [`AuditOutput`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawAuditOutput {
    Stdout,
    Stderr,
    File,
    Off,
}

impl RawAuditOutput {
    /// The word as written in the configuration.
    fn word(self) -> &'static str {
        match self {
            RawAuditOutput::Stdout => "stdout",
            RawAuditOutput::Stderr => "stderr",
            RawAuditOutput::File => "file",
            RawAuditOutput::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AuditOutput {
    Off,
    Stdout,
    Stderr,
    /// JSON lines in `path`, rotated to `path.1` … `path.<keep>` past `max_bytes`.
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditConfig {
    pub output: AuditOutput,
    /// Write the arguments themselves, not only their SHA-256.
    pub log_arguments: bool,
}

/// `OTEL_*` variables as fallbacks for `otel.*` keys: `(key, variable)`, the first
/// variable set wins (the traces-specific one before the generic one).
const STANDARD_ENV: &[(&str, &str)] = &[
    ("otel.endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ("otel.endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ("otel.protocol", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    ("otel.protocol", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ("otel.service_name", "OTEL_SERVICE_NAME"),
    ("otel.resource_attributes", "OTEL_RESOURCE_ATTRIBUTES"),
];

/// `otel.max_traces_per_second` when unset: all traces of a typical team's traffic,
/// and a bound on what tracing costs at saturation (a traced call costs about a
/// third more CPU) and sends to the collector.
pub const DEFAULT_MAX_TRACES_PER_SECOND: u32 = 1000;

/// The generic endpoint is a base URL: the traces path is appended to it.
const GENERIC_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Apply the standard variables (before the edge's own, which override them).
pub(super) fn apply_standard_env(env: &dyn EnvSource, layered: &mut Layered) {
    let disabled = env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env
            .get("OTEL_TRACES_EXPORTER")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    let mut done: Vec<&str> = Vec::new();
    for (key, var) in STANDARD_ENV {
        if done.contains(key) || (disabled && *key == "otel.endpoint") {
            continue;
        }
        if let Some(value) = env.get(var).filter(|v| !v.trim().is_empty())
            && layered.raw.set(key, &value).is_ok()
        {
            layered.origins.insert(key, Origin::Env(var));
            done.push(key);
        }
    }
    // OTEL_TRACES_SAMPLER / _ARG: the ratio samplers and their fixed cases.
    let ratio = match env.get("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
        Some("always_on" | "parentbased_always_on") => Some(1.0),
        Some("always_off" | "parentbased_always_off") => Some(0.0),
        Some("traceidratio" | "parentbased_traceidratio") => env
            .get("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|a| a.trim().parse::<f64>().ok())
            .or(Some(1.0)),
        _ => None,
    };
    if let Some(ratio) = ratio {
        layered.raw.otel.sample_ratio = Some(ratio);
        layered
            .origins
            .insert("otel.sample_ratio", Origin::Env("OTEL_TRACES_SAMPLER"));
    }
}

pub(super) fn validate_log(e: &mut Errors<'_>, raw: &RawConfig) -> LogConfig {
    let format = e
        .choice("log.format", &raw.log.format)
        .unwrap_or(LogFormat::Pretty);
    let level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        e.push(
            "log.level",
            format!("{level:?} is not a level or filter (e.g. info, debug, mcp_edge=debug)"),
        );
    }
    LogConfig { format, level }
}

pub(super) fn validate_otel(e: &mut Errors<'_>, raw: &RawConfig) -> Option<OtelConfig> {
    let o = &raw.otel;
    let protocol = e
        .choice("otel.protocol", &o.protocol)
        .unwrap_or(OtlpProtocol::HttpProtobuf);
    let sample_ratio = o.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        e.push(
            "otel.sample_ratio",
            format!("must be between 0.0 and 1.0, got {sample_ratio}"),
        );
    }
    let headers_file = path_of(&o.headers_file);
    if let Some(path) = &headers_file
        && let Err(problem) = read_headers(path)
    {
        e.push("otel.headers_file", problem);
    }
    let mut resource_attributes = Vec::new();
    for pair in o.resource_attributes.iter().flatten() {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                resource_attributes.push((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => e.push(
                "otel.resource_attributes",
                format!("each entry must be key=value, got {pair:?}"),
            ),
        }
    }
    let service_name = o
        .service_name
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "mcp-edge".into());
    let endpoint = o
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(endpoint) = endpoint else {
        if headers_file.is_some() {
            e.push(
                "otel.headers_file",
                "is set but otel.endpoint (MCP_OTEL_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT) is not",
            );
        }
        return None;
    };
    let Some(url) = url::Url::parse(endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
    else {
        e.push(
            "otel.endpoint",
            format!("must be an http:// or https:// URL of an OTLP collector, got {endpoint:?}"),
        );
        return None;
    };
    let generic = e.layered.origin("otel.endpoint") == Origin::Env(GENERIC_ENDPOINT);
    let endpoint = match protocol {
        // A base URL (or the generic variable) gets the traces path, as the spec says.
        OtlpProtocol::HttpProtobuf if generic || matches!(url.path(), "" | "/") => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_owned(),
    };
    Some(OtelConfig {
        endpoint,
        protocol,
        sample_ratio: sample_ratio.clamp(0.0, 1.0),
        max_traces_per_second: o
            .max_traces_per_second
            .unwrap_or(DEFAULT_MAX_TRACES_PER_SECOND),
        headers_file,
        service_name,
        resource_attributes,
    })
}

/// The headers of `otel.headers_file`: `name: value` or `name=value`, one per line,
/// `#` comments. Errors name the line, never its value.
pub fn read_headers(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mut headers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let split = line.find([':', '=']).map(|i| (&line[..i], &line[i + 1..]));
        let valid = split.filter(|(name, value)| {
            http::HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
                && http::HeaderValue::from_str(value.trim()).is_ok()
        });
        match valid {
            Some((name, value)) => {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            }
            None => {
                return Err(format!(
                    "{} line {}: expected `header-name: value`",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(headers)
}

pub(super) fn validate_audit(e: &mut Errors<'_>, raw: &RawConfig, stdio: bool) -> AuditConfig {
    use RawAuditOutput as Raw;
    let a = &raw.audit;
    let log_arguments = a.log_arguments.unwrap_or(false);
    let file = path_of(&a.file);
    let max_bytes = a.max_file_bytes.unwrap_or(100 * 1024 * 1024);
    if max_bytes < 4096 {
        e.push("audit.max_file_bytes", "must be at least 4096");
    }
    let keep = a.max_files.unwrap_or(5);
    let chosen = match &a.output {
        None => None,
        Some(Choice::Known(output)) => Some(*output),
        Some(Choice::Unknown(unknown)) => {
            e.push("audit.output", unknown.to_string());
            return AuditConfig {
                output: AuditOutput::Off,
                log_arguments,
            };
        }
    };
    let output = match (chosen, file) {
        (Some(Raw::File) | None, Some(path)) => AuditOutput::File {
            path,
            max_bytes,
            keep,
        },
        (Some(Raw::File), None) => {
            e.push(
                "audit.file",
                "is required when audit.output is \"file\" (MCP_AUDIT_FILE)",
            );
            AuditOutput::Off
        }
        // Over stdio, stdout is the MCP channel: the records go to stderr.
        (None, None) if stdio => AuditOutput::Stderr,
        (Some(Raw::Stdout), None) if stdio => {
            e.push(
                "audit.output",
                "cannot be \"stdout\" with server.transport = \"stdio\" (stdout carries MCP)",
            );
            AuditOutput::Stderr
        }
        (None | Some(Raw::Stdout), None) => AuditOutput::Stdout,
        (Some(Raw::Stderr), None) => AuditOutput::Stderr,
        (Some(Raw::Off), None) => AuditOutput::Off,
        (Some(other @ (Raw::Stdout | Raw::Stderr | Raw::Off)), Some(_)) => {
            e.push(
                "audit.file",
                format!(
                    "is set but audit.output is {:?} (set it to \"file\" or drop it)",
                    other.word()
                ),
            );
            AuditOutput::Off
        }
    };
    AuditConfig {
        output,
        log_arguments,
    }
}
