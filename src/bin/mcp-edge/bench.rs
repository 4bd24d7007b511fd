//! `mcp-edge bench`: drive tools/call over HTTPS and report throughput and latency.
//!
//! Every worker owns one logical MCP client (a session in `session` mode, nothing
//! in `stateless` mode) and sends one `tools/call` at a time; `--concurrency`
//! workers run side by side over one shared connection pool. Every reply is
//! checked: a JSON-RPC `result` must be present and `result.isError` must not be
//! true. Anything else is a failure, counted and reported, and makes the command
//! exit non-zero.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

/// Protocol revision used in session mode (initialize handshake + Mcp-Session-Id).
pub const SESSION_PROTOCOL: &str = "2025-06-18";
/// Protocol revision used in stateless mode (per-request `_meta`, no handshake).
pub const STATELESS_PROTOCOL: &str = "2026-07-28";
const CLIENT_NAME: &str = "mcp-edge-bench";
const CLIENT_VERSION: &str = "1";
const DEFAULT_KEY_ENV: &str = "MCP_BENCH_KEY";
/// A reply larger than this is refused (a benchmark reply should be small).
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// How many distinct error messages are kept and printed.
const MAX_DISTINCT_ERRORS: usize = 5;
const RATE_LIMITED: &str = "HTTP 429 rate limited: raise the key's rate= in the keys file \
     (dev profile: MCP_RATE_LIMIT / MCP_RATE_BURST) for benchmarking";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Protocol 2025-06-18: initialize once per worker, then reuse the session.
    Session,
    /// Protocol 2026-07-28: no handshake, no session; per-request `_meta` and headers.
    Stateless,
}

impl BenchMode {
    fn as_str(self) -> &'static str {
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

fn parse_json_object(s: &str) -> Result<Map<String, Value>, String> {
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

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    mcp_edge::tls::install_crypto_provider();
    let key = load_key(args)?;
    let url = reqwest::Url::parse(&args.url)
        .map_err(|e| BenchError::Setup(format!("bad --url {}: {e}", args.url)))?;
    match url.scheme() {
        "https" => {}
        "http" => eprintln!("bench: warning: plain http sends the API key unencrypted"),
        other => {
            return Err(BenchError::Setup(format!(
                "--url: unsupported scheme {other}"
            )));
        }
    }
    let calls_url = match &args.calls_url {
        Some(u) => reqwest::Url::parse(u)
            .map_err(|e| BenchError::Setup(format!("bad --calls-url {u}: {e}")))?,
        None => url.clone(),
    };
    let client = build_client(args)?;
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| {
            BenchError::Key("the API key holds characters not allowed in a header".into())
        })?;
    auth.set_sensitive(true);
    drop(key);

    let arguments = Value::Object(args.args.clone());
    let mut params = json!({ "name": args.tool, "arguments": arguments });
    let mut shared = Shared {
        client,
        url,
        calls_url,
        auth,
        mode: args.mode,
        params_json: String::new(),
        call_headers: HeaderMap::new(),
        timeout: args.timeout,
        limit: args.requests,
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    if args.mode == BenchMode::Stateless {
        params["_meta"] = stateless_meta();
        let schema = stateless_tool_schema(&shared, &args.tool).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static(STATELESS_PROTOCOL),
        );
        headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
        headers.insert("mcp-name", header_value(&args.tool)?);
        for (name, value) in param_headers(&schema, &arguments)? {
            headers.insert(name, value);
        }
        shared.call_headers = headers;
    }
    shared.params_json = params.to_string();
    let shared = Arc::new(shared);

    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    eprintln!(
        "bench: {} mode={} tool={} concurrency={} warmup={} duration={}{}",
        shared.url,
        args.mode.as_str(),
        args.tool,
        args.concurrency,
        humantime::format_duration(args.warmup),
        duration.map_or_else(
            || "unlimited".to_owned(),
            |d| humantime::format_duration(d).to_string()
        ),
        args.requests
            .map(|n| format!(" requests={n}"))
            .unwrap_or_default(),
    );

    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.concurrency as usize);
    let mut workers = Vec::with_capacity(args.concurrency as usize);
    for n in 0..args.concurrency {
        workers.push(tokio::spawn(worker(
            n,
            shared.clone(),
            phase_rx.clone(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let mut setup_errors = Vec::new();
    while let Some(result) = ready_rx.recv().await {
        if let Err(e) = result {
            setup_errors.push(e);
        }
    }
    if !setup_errors.is_empty() {
        let _ = phase_tx.send(Phase::Abort);
        for w in workers {
            let _ = w.await;
        }
        return Err(BenchError::Setup(format!(
            "{} of {} workers could not start; first error: {}",
            setup_errors.len(),
            args.concurrency,
            setup_errors[0]
        )));
    }

    let start = Instant::now();
    let warm_until = start + args.warmup;
    let end = duration.map(|d| warm_until + d);
    let _ = phase_tx.send(Phase::Go { warm_until, end });
    let ctrl_c = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("bench: interrupted, finishing in-flight requests");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let mut total = Stats::default();
    for w in workers {
        match w.await {
            Ok(stats) => total.merge(stats),
            Err(e) => {
                total.failed += 1;
                total
                    .errors
                    .add(Failure::new(format!("worker crashed: {e}")));
            }
        }
    }
    ctrl_c.abort();

    let report = Report::new(args, &mut total, warm_until);
    println!("{}", report.line());
    if args.json {
        println!("{}", report.json());
    }
    if total.delete_failed > 0 {
        eprintln!(
            "bench: warning: {} session(s) could not be closed with DELETE",
            total.delete_failed
        );
    }
    let failed = total.failed + total.warmup_failed;
    if failed > 0 {
        eprintln!("bench: failures (first {MAX_DISTINCT_ERRORS} distinct):");
        for e in &total.errors.list {
            eprintln!("  {}x {}", e.count, e.failure.key);
            if let Some(detail) = &e.failure.detail {
                eprintln!("      body: {detail}");
            }
        }
        if total.errors.other > 0 {
            eprintln!("  {}x (other messages)", total.errors.other);
        }
        return Err(BenchError::Failed {
            failed,
            total: total.ok + total.failed + total.warmup_ok + total.warmup_failed,
        });
    }
    Ok(())
}

fn load_key(args: &BenchArgs) -> Result<SecretString, BenchError> {
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

fn build_client(args: &BenchArgs) -> Result<reqwest::Client, BenchError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mcp-edge-bench/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.concurrency as usize);
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            BenchError::Setup(format!("cannot read --ca-file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            BenchError::Setup(format!("--ca-file {}: bad PEM: {e}", path.display()))
        })?;
        if certs.is_empty() {
            return Err(BenchError::Setup(format!(
                "--ca-file {} holds no PEM certificate",
                path.display()
            )));
        }
        builder = builder.tls_certs_only(certs);
    }
    if args.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if args.http1 {
        builder = builder.http1_only();
    }
    builder.build().map_err(|e| {
        BenchError::Setup(format!("cannot build the HTTP client: {}", error_chain(&e)))
    })
}

fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_PROTOCOL,
        "io.modelcontextprotocol/clientInfo": {"name": CLIENT_NAME, "version": CLIENT_VERSION},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

struct Shared {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Where the measured calls go (--calls-url, else --url).
    calls_url: reqwest::Url,
    auth: HeaderValue,
    mode: BenchMode,
    /// The serialized `params` of every tools/call.
    params_json: String,
    /// Mode-specific headers of every tools/call (stateless: version, method, name).
    call_headers: HeaderMap,
    timeout: Duration,
    limit: Option<u64>,
    issued: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn base_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, self.auth.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h
    }

    async fn post(&self, headers: HeaderMap, body: String) -> Result<reqwest::Response, Failure> {
        self.post_to(&self.url, headers, body).await
    }

    async fn post_to(
        &self,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: String,
    ) -> Result<reqwest::Response, Failure> {
        self.client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::new(format!("request failed: {}", error_chain(&e))))
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Setup,
    Go {
        warm_until: Instant,
        end: Option<Instant>,
    },
    Abort,
}

struct Session {
    id: HeaderValue,
}

async fn worker(
    n: u32,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) -> Stats {
    let mut stats = Stats::default();
    let mut headers = shared.base_headers();
    headers.extend(shared.call_headers.clone());
    let session = match shared.mode {
        BenchMode::Stateless => None,
        BenchMode::Session => match with_timeout(shared.timeout, initialize(&shared)).await {
            Ok((session, version)) => {
                headers.insert("mcp-session-id", session.id.clone());
                headers.insert("mcp-protocol-version", version);
                Some(session)
            }
            Err(e) => {
                let mut msg = format!("worker {n}: initialize: {}", e.key);
                if let Some(d) = e.detail {
                    let _ = write!(msg, " (body: {d})");
                }
                let _ = ready.send(Err(msg)).await;
                return stats;
            }
        },
    };
    let _ = ready.send(Ok(())).await;
    drop(ready);

    let go = phase
        .wait_for(|p| !matches!(p, Phase::Setup))
        .await
        .map(|p| *p)
        .unwrap_or(Phase::Abort);
    if let Phase::Go { warm_until, end } = go {
        let mut id: u64 = 0;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            if end.is_some_and(|end| now >= end) {
                break;
            }
            let warm = now < warm_until;
            if !warm
                && let Some(limit) = shared.limit
                && shared.issued.fetch_add(1, Ordering::Relaxed) >= limit
            {
                break;
            }
            id += 1;
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{}}}"#,
                shared.params_json
            );
            let sent = Instant::now();
            let mut version = None;
            let outcome = with_timeout(
                shared.timeout,
                call(&shared, headers.clone(), body, id, &mut version),
            )
            .await;
            stats.record(warm, sent, version, outcome);
        }
    }
    if let Some(session) = session
        && !close_session(&shared, &session).await
    {
        stats.delete_failed += 1;
    }
    stats
}

/// One tools/call; notes the HTTP version and returns when the reply was parsed.
async fn call(
    shared: &Shared,
    headers: HeaderMap,
    body: String,
    id: u64,
    version: &mut Option<reqwest::Version>,
) -> Result<Instant, Failure> {
    let response = shared.post_to(&shared.calls_url, headers, body).await?;
    *version = Some(response.version());
    let (message, parsed_at) = read_reply(response, id).await?;
    check_tool_result(&message)?;
    Ok(parsed_at)
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(Failure::new(format!(
            "timed out after {}",
            humantime::format_duration(limit)
        )))
    })
}

/// Session mode handshake: initialize + notifications/initialized.
async fn initialize(shared: &Shared) -> Result<(Session, HeaderValue), Failure> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": SESSION_PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": CLIENT_NAME, "version": CLIENT_VERSION},
        },
    });
    let response = shared.post(shared.base_headers(), body.to_string()).await?;
    let session_id = response.headers().get("mcp-session-id").cloned();
    let (message, _) = read_reply(response, 0).await?;
    let result = jsonrpc_result(&message)?;
    let Some(session_id) = session_id else {
        return Err(Failure::new(
            "initialize reply carries no Mcp-Session-Id header (server is stateless? try --mode stateless)",
        ));
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(SESSION_PROTOCOL);
    let version = header_value(version).map_err(|e| Failure::new(e.to_string()))?;

    let mut headers = shared.base_headers();
    headers.insert("mcp-session-id", session_id.clone());
    headers.insert("mcp-protocol-version", version.clone());
    let response = shared
        .post(
            headers,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        )
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(http_failure(status, response).await);
    }
    let _ = response.bytes().await;
    Ok((Session { id: session_id }, version))
}

/// DELETE the session; true when the server confirmed it.
async fn close_session(shared: &Shared, session: &Session) -> bool {
    let result = shared
        .client
        .delete(shared.url.clone())
        .header(AUTHORIZATION, shared.auth.clone())
        .header("mcp-session-id", session.id.clone())
        .header(
            "mcp-protocol-version",
            HeaderValue::from_static(SESSION_PROTOCOL),
        )
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    matches!(result, Ok(r) if r.status().is_success())
}

/// Stateless mode preflight: tools/list, to check the tool exists and learn its
/// input schema (for SEP-2243 `Mcp-Param-*` headers).
async fn stateless_tool_schema(shared: &Shared, tool: &str) -> Result<Value, BenchError> {
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..100 {
        let mut params = json!({ "_meta": stateless_meta() });
        if let Some(c) = &cursor {
            params["cursor"] = Value::String(c.clone());
        }
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "tools/list", "params": params});
        let mut headers = shared.base_headers();
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static(STATELESS_PROTOCOL),
        );
        headers.insert("mcp-method", HeaderValue::from_static("tools/list"));
        let fail = |e: Failure| {
            let mut msg = format!("stateless tools/list failed: {}", e.key);
            if let Some(d) = e.detail {
                let _ = write!(msg, "\n  body: {d}");
            }
            BenchError::Setup(msg)
        };
        let reply = with_timeout(shared.timeout, async {
            read_reply(shared.post(headers, body.to_string()).await?, 0).await
        });
        let (message, _) = reply.await.map_err(fail)?;
        let result = jsonrpc_result(&message).map_err(fail)?;
        for t in result
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            if name == tool {
                return Ok(t.get("inputSchema").cloned().unwrap_or(Value::Null));
            }
            seen.push(name.to_owned());
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    Err(BenchError::Setup(format!(
        "the server offers no tool {tool:?}; it offers: {}",
        seen.join(", ")
    )))
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/// One failed request: `key` is the message failures are grouped by (no ids),
/// `detail` the first body seen for it.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    key: String,
    detail: Option<String>,
    rate_limited: bool,
}

impl Failure {
    fn new(key: impl Into<String>) -> Failure {
        Failure {
            key: key.into(),
            detail: None,
            rate_limited: false,
        }
    }
}

async fn http_failure(status: StatusCode, response: reqwest::Response) -> Failure {
    let body = response.text().await.unwrap_or_default();
    // The edge also answers 429 when a principal holds too many sessions; only a
    // rate-limit refusal gets the rate-limit advice.
    if status == StatusCode::TOO_MANY_REQUESTS && !body.to_ascii_lowercase().contains("session") {
        return Failure {
            key: RATE_LIMITED.into(),
            detail: None,
            rate_limited: true,
        };
    }
    let error = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    // The whole body is shown when the summary may leave something out.
    let show_body = error
        .as_ref()
        .is_none_or(|e| !e.is_object() || e.get("data").is_some());
    let summary = error
        .map(|err| match err {
            Value::Object(o) => {
                let code = o.get("code").map(|c| format!("{c} ")).unwrap_or_default();
                let msg = o.get("message").and_then(Value::as_str).unwrap_or("");
                format!("{code}{msg}")
            }
            other => other.to_string(),
        })
        .unwrap_or_else(|| truncate(body.trim(), 200));
    Failure {
        key: format!("HTTP {status}: {summary}"),
        detail: (show_body && !body.trim().is_empty()).then(|| truncate(body.trim(), 1000)),
        rate_limited: false,
    }
}

/// Read a POST reply (SSE or JSON) up to the JSON-RPC message with `id`.
/// Returns the message and the instant it was parsed; the rest of the body is
/// drained (untimed) so the connection can be reused.
async fn read_reply(mut response: reqwest::Response, id: u64) -> Result<(Value, Instant), Failure> {
    let status = response.status();
    if !status.is_success() {
        return Err(http_failure(status, response).await);
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_error =
        |e: reqwest::Error| Failure::new(format!("reading reply: {}", error_chain(&e)));
    if content_type.starts_with("text/event-stream") {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut size = 0usize;
        let mut ended = false;
        loop {
            match response.chunk().await.map_err(body_error)? {
                Some(chunk) => {
                    size += chunk.len();
                    if size > MAX_REPLY_BYTES {
                        return Err(Failure::new("reply larger than 16 MiB"));
                    }
                    parser.push(&chunk, &mut events);
                }
                None => {
                    parser.finish(&mut events);
                    ended = true;
                }
            }
            for data in events.drain(..) {
                if let Some(message) = find_message(&data, id)? {
                    let parsed_at = Instant::now();
                    if !ended {
                        drain(response).await;
                    }
                    return Ok((message, parsed_at));
                }
            }
            if ended {
                return Err(Failure::new("SSE stream ended without the reply"));
            }
        }
    } else if content_type.starts_with("application/json") {
        let bytes = response.bytes().await.map_err(body_error)?;
        let text = String::from_utf8_lossy(&bytes);
        match find_message(&text, id)? {
            Some(message) => Ok((message, Instant::now())),
            None => Err(Failure {
                key: "JSON reply holds no message with the request id".into(),
                detail: Some(truncate(&text, 1000)),
                rate_limited: false,
            }),
        }
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(Failure {
            key: format!("unexpected reply Content-Type {content_type:?}"),
            detail: Some(truncate(&body, 1000)),
            rate_limited: false,
        })
    }
}

async fn drain(mut response: reqwest::Response) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
}

/// Parse one SSE data payload (a message or a batch) and pick the message with `id`.
/// Empty payloads (priming events) and other messages give `None`.
fn find_message(data: &str, id: u64) -> Result<Option<Value>, Failure> {
    if data.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(data).map_err(|e| Failure {
        key: format!("reply is not JSON: {e}"),
        detail: Some(truncate(data, 1000)),
        rate_limited: false,
    })?;
    let is_reply = |m: &Value| {
        m.get("id").and_then(Value::as_u64) == Some(id)
            && (m.get("result").is_some() || m.get("error").is_some())
    };
    Ok(match value {
        Value::Array(batch) => batch.into_iter().find(is_reply),
        message if is_reply(&message) => Some(message),
        _ => None,
    })
}

/// The `result` of a JSON-RPC reply, or its error as a failure.
fn jsonrpc_result(message: &Value) -> Result<&Value, Failure> {
    if let Some(error) = message.get("error") {
        let code = error.get("code").map(|c| c.to_string()).unwrap_or_default();
        let msg = error.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(Failure {
            key: format!("JSON-RPC error {code}: {msg}"),
            detail: error
                .get("data")
                .is_some()
                .then(|| truncate(&error.to_string(), 1000)),
            rate_limited: false,
        });
    }
    message
        .get("result")
        .ok_or_else(|| Failure::new("reply has neither result nor error"))
}

/// A successful tool result: `result` present and `result.isError` not true.
fn check_tool_result(message: &Value) -> Result<(), Failure> {
    let result = jsonrpc_result(message)?;
    if !result.is_object() {
        return Err(Failure::new("tools/call result is not an object"));
    }
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = result
            .get("content")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find_map(|item| item.get("text").and_then(Value::as_str))
            })
            .unwrap_or("(no text)");
        return Err(Failure::new(format!("tool error: {}", truncate(text, 200))));
    }
    Ok(())
}

/// Incremental `text/event-stream` parser: yields the `data` of each event.
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    event: SseEvent,
}

#[derive(Default)]
struct SseEvent {
    data: String,
    has_data: bool,
}

impl SseEvent {
    fn line(&mut self, line: &[u8], out: &mut Vec<String>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(&String::from_utf8_lossy(value));
            self.has_data = true;
        }
        // id:, event:, retry: are not needed here.
    }
}

impl SseParser {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(rel) = self.buf[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + rel;
            let term = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => break, // a CR at the end: wait to see if LF follows
                }
            } else {
                1
            };
            self.event.line(&self.buf[start..end], out);
            start = end + term;
        }
        self.buf.drain(..start);
    }

    /// End of stream: take a last unterminated line and a last undelimited event.
    fn finish(&mut self, out: &mut Vec<String>) {
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        if !rest.is_empty() {
            self.event.line(rest, out);
        }
        self.event.line(b"", out);
    }
}

// ---------------------------------------------------------------------------
// SEP-2243 headers
// ---------------------------------------------------------------------------

/// A header value as rmcp's clients encode it: verbatim when it is plain visible
/// ASCII, else `=?base64?…?=`.
fn encode_header_value(value: &str) -> String {
    let needs_base64 = !value.is_empty()
        && (value.starts_with([' ', '\t'])
            || value.ends_with([' ', '\t'])
            || value.chars().any(|c| !(' '..='~').contains(&c))
            || (value.starts_with("=?base64?") && value.ends_with("?=")));
    if needs_base64 {
        format!("=?base64?{}?=", base64(value.as_bytes()))
    } else {
        value.to_owned()
    }
}

fn header_value(value: &str) -> Result<HeaderValue, BenchError> {
    HeaderValue::from_str(&encode_header_value(value))
        .map_err(|e| BenchError::Setup(format!("cannot put {value:?} in a header: {e}")))
}

/// `Mcp-Param-*` headers for arguments whose schema property carries `x-mcp-header`.
fn param_headers(
    schema: &Value,
    arguments: &Value,
) -> Result<Vec<(HeaderName, HeaderValue)>, BenchError> {
    fn walk<'a>(
        properties: Option<&'a Value>,
        path: &mut Vec<&'a str>,
        arguments: &Value,
        out: &mut Vec<(String, String)>,
    ) {
        let Some(Value::Object(properties)) = properties else {
            return;
        };
        for (name, sub) in properties {
            path.push(name);
            if let Some(Value::String(header)) = sub.get("x-mcp-header")
                && !header.is_empty()
            {
                let arg = path.iter().try_fold(arguments, |v, k| v.get(*k));
                let text = match arg {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                if let Some(text) = text {
                    out.push((format!("mcp-param-{header}"), text));
                }
            }
            walk(sub.get("properties"), path, arguments, out);
            path.pop();
        }
    }
    let mut found = Vec::new();
    walk(
        schema.get("properties"),
        &mut Vec::new(),
        arguments,
        &mut found,
    );
    found
        .into_iter()
        .map(|(name, text)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| BenchError::Setup(format!("bad x-mcp-header name {name}: {e}")))?;
            Ok((name, header_value(&text)?))
        })
        .collect()
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| TABLE[((n >> shift) & 63) as usize] as char;
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

// ---------------------------------------------------------------------------
// Statistics and report
// ---------------------------------------------------------------------------

struct ErrorCount {
    failure: Failure,
    count: u64,
}

#[derive(Default)]
struct Errors {
    list: Vec<ErrorCount>,
    other: u64,
}

impl Errors {
    fn add(&mut self, failure: Failure) {
        self.add_n(failure, 1);
    }

    fn add_n(&mut self, failure: Failure, n: u64) {
        if let Some(e) = self.list.iter_mut().find(|e| e.failure.key == failure.key) {
            e.count += n;
        } else if self.list.len() < MAX_DISTINCT_ERRORS {
            self.list.push(ErrorCount { failure, count: n });
        } else {
            self.other += n;
        }
    }
}

#[derive(Default)]
struct Stats {
    /// Measured, successful requests: latency in microseconds.
    latencies_us: Vec<u64>,
    ok: u64,
    failed: u64,
    rate_limited: u64,
    warmup_ok: u64,
    warmup_failed: u64,
    errors: Errors,
    versions: BTreeSet<String>,
    /// When the last measured request finished.
    last_done: Option<Instant>,
    delete_failed: u64,
}

impl Stats {
    fn record(
        &mut self,
        warm: bool,
        sent: Instant,
        version: Option<reqwest::Version>,
        outcome: Result<Instant, Failure>,
    ) {
        let done = Instant::now();
        if let Some(version) = version {
            self.versions.insert(format!("{version:?}"));
        }
        match outcome {
            Ok(parsed_at) => {
                if warm {
                    self.warmup_ok += 1;
                } else {
                    self.ok += 1;
                    let us = parsed_at.saturating_duration_since(sent).as_micros();
                    self.latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                }
            }
            Err(failure) => {
                if warm {
                    self.warmup_failed += 1;
                } else {
                    self.failed += 1;
                }
                if failure.rate_limited {
                    self.rate_limited += 1;
                }
                self.errors.add(failure);
            }
        }
        if !warm {
            self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.failed += other.failed;
        self.rate_limited += other.rate_limited;
        self.warmup_ok += other.warmup_ok;
        self.warmup_failed += other.warmup_failed;
        for e in other.errors.list {
            self.errors.add_n(e.failure, e.count);
        }
        self.errors.other += other.errors.other;
        self.versions.extend(other.versions);
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.delete_failed += other.delete_failed;
    }
}

/// Nearest-rank percentile of sorted samples (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn fmt_ms(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}

struct Report {
    mode: &'static str,
    http: String,
    concurrency: u32,
    elapsed: Duration,
    requests: u64,
    ok: u64,
    failed: u64,
    rate_limited: u64,
    warmup_requests: u64,
    warmup_failed: u64,
    rps: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: u64,
    tool: String,
}

impl Report {
    fn new(args: &BenchArgs, stats: &mut Stats, measure_start: Instant) -> Report {
        stats.latencies_us.sort_unstable();
        let l = &stats.latencies_us;
        let elapsed = stats
            .last_done
            .map(|d| d.saturating_duration_since(measure_start))
            .unwrap_or_default();
        let requests = stats.ok + stats.failed;
        let secs = elapsed.as_secs_f64();
        let mean = if l.is_empty() {
            0
        } else {
            l.iter().sum::<u64>() / l.len() as u64
        };
        Report {
            mode: args.mode.as_str(),
            http: stats.versions.iter().cloned().collect::<Vec<_>>().join("+"),
            concurrency: args.concurrency,
            elapsed,
            requests,
            ok: stats.ok,
            failed: stats.failed,
            rate_limited: stats.rate_limited,
            warmup_requests: stats.warmup_ok + stats.warmup_failed,
            warmup_failed: stats.warmup_failed,
            rps: if secs > 0.0 {
                stats.ok as f64 / secs
            } else {
                0.0
            },
            p50: percentile(l, 50.0),
            p90: percentile(l, 90.0),
            p99: percentile(l, 99.0),
            max: l.last().copied().unwrap_or(0),
            mean,
            tool: args.tool.clone(),
        }
    }

    fn line(&self) -> String {
        let mut s = format!(
            "mode={} http={} concurrency={} duration={:.1}s requests={} ok={} failed={} rps={:.1} p50={} p90={} p99={} max={}",
            self.mode,
            if self.http.is_empty() {
                "-"
            } else {
                &self.http
            },
            self.concurrency,
            self.elapsed.as_secs_f64(),
            self.requests,
            self.ok,
            self.failed,
            self.rps,
            fmt_ms(self.p50),
            fmt_ms(self.p90),
            fmt_ms(self.p99),
            fmt_ms(self.max),
        );
        if self.rate_limited > 0 {
            let _ = write!(s, " rate_limited={}", self.rate_limited);
        }
        if self.warmup_failed > 0 {
            let _ = write!(
                s,
                " warmup_failed={}/{}",
                self.warmup_failed, self.warmup_requests
            );
        }
        s
    }

    fn json(&self) -> Value {
        let ms = |us: u64| us as f64 / 1000.0;
        json!({
            "mode": self.mode,
            "http": self.http,
            "tool": self.tool,
            "concurrency": self.concurrency,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "rate_limited": self.rate_limited,
            "warmup_requests": self.warmup_requests,
            "warmup_failed": self.warmup_failed,
            "rps": self.rps,
            "latency_ms": {
                "p50": ms(self.p50),
                "p90": ms(self.p90),
                "p99": ms(self.p99),
                "max": ms(self.max),
                "mean": ms(self.mean),
            },
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An error with its sources (reqwest's top-level message alone hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn sse_priming_event_then_reply() {
        let body = b"id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        let events = parse_all(&[body]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], "");
        assert_eq!(find_message(&events[0], 7).unwrap(), None);
        let msg = find_message(&events[1], 7).unwrap().unwrap();
        assert_eq!(msg["id"], 7);
        assert!(check_tool_result(&msg).is_ok());
    }

    #[test]
    fn sse_split_chunks_crlf_comments_and_multiline_data() {
        let body: &[u8] = b": keep-alive\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\r";
        // Split everywhere, including between CR and LF.
        let chunks: Vec<&[u8]> = body.chunks(1).collect();
        let events = parse_all(&chunks);
        assert_eq!(events, vec!["{\"a\":\n1}".to_owned(), "x".to_owned()]);
    }

    #[test]
    fn sse_skips_other_messages_and_finds_batches() {
        let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        assert_eq!(find_message(note, 3).unwrap(), None);
        let other = r#"{"jsonrpc":"2.0","id":2,"result":{}}"#;
        assert_eq!(find_message(other, 3).unwrap(), None);
        let batch =
            r#"[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":3,"result":{"ok":1}}]"#;
        assert_eq!(find_message(batch, 3).unwrap().unwrap()["result"]["ok"], 1);
        assert!(find_message("not json", 3).is_err());
    }

    #[test]
    fn tool_results_are_checked() {
        let ok = json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}});
        assert!(check_tool_result(&ok).is_ok());
        let tool_err = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}});
        assert_eq!(
            check_tool_result(&tool_err).unwrap_err().key,
            "tool error: boom"
        );
        let rpc_err = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}});
        assert_eq!(
            check_tool_result(&rpc_err).unwrap_err().key,
            "JSON-RPC error -32602: bad"
        );
        assert!(check_tool_result(&json!({"jsonrpc":"2.0","id":1})).is_err());
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[42], 99.0), 42);
        assert_eq!(percentile(&[], 50.0), 0);
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 50.0), 20);
        assert_eq!(percentile(&v, 90.0), 40);
    }

    #[test]
    fn header_values_are_encoded_like_rmcp() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(encode_header_value("search_docs"), "search_docs");
        assert_eq!(encode_header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(encode_header_value(" x"), "=?base64?IHg=?=");
    }

    #[test]
    fn param_headers_follow_x_mcp_header() {
        let schema = json!({"type":"object","properties":{
            "query": {"type":"string","x-mcp-header":"Query"},
            "opts": {"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
            "plain": {"type":"string"}
        }});
        let args = json!({"query":"mcp","opts":{"n":3},"plain":"p"});
        let mut h: Vec<(String, String)> = param_headers(&schema, &args)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort();
        assert_eq!(
            h,
            vec![
                ("mcp-param-n".to_owned(), "3".to_owned()),
                ("mcp-param-query".to_owned(), "mcp".to_owned())
            ]
        );
    }

    #[test]
    fn args_must_be_an_object() {
        assert!(parse_json_object(r#"{"query":"mcp"}"#).is_ok());
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object("{").is_err());
    }
}
