//! The bench's MCP client: the HTTP client and request headers every worker
//! shares, the session handshake and close, and the stateless preflight.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::headers::{header_value, param_headers};
use super::options::{BenchArgs, BenchError, BenchMode, load_key};
use super::reply::{Failure, error_chain, http_failure, jsonrpc_result, read_reply};

/// Protocol revision used in session mode (initialize handshake + Mcp-Session-Id).
pub(super) const SESSION_PROTOCOL: &str = "2025-06-18";
/// Protocol revision used in stateless mode (per-request `_meta`, no handshake).
pub(super) const STATELESS_PROTOCOL: &str = "2026-07-28";
const CLIENT_NAME: &str = "mcp-edge-bench";
const CLIENT_VERSION: &str = "1";

/// Check the arguments, build the HTTP client and, in stateless mode, learn the
/// tool's headers: everything the workers share.
pub(super) async fn connect(args: &BenchArgs) -> Result<Shared, BenchError> {
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
    Ok(shared)
}

fn build_client(args: &BenchArgs) -> Result<reqwest::Client, BenchError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mcp-edge-bench/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // Twice the workers: a request sent before the previous answer's connection is
        // back in the pool makes the client dial a second one; with room for it in the
        // pool both are reused from then on, instead of one being closed and a TLS
        // handshake paid every few calls (seen under valgrind: one per 5-9 calls).
        .pool_max_idle_per_host(2 * args.concurrency as usize);
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

pub(super) struct Shared {
    pub(super) client: reqwest::Client,
    pub(super) url: reqwest::Url,
    /// Where the measured calls go (--calls-url, else --url).
    pub(super) calls_url: reqwest::Url,
    pub(super) auth: HeaderValue,
    pub(super) mode: BenchMode,
    /// The serialized `params` of every tools/call.
    pub(super) params_json: String,
    /// Mode-specific headers of every tools/call (stateless: version, method, name).
    pub(super) call_headers: HeaderMap,
    pub(super) timeout: Duration,
    pub(super) limit: Option<u64>,
    pub(super) issued: AtomicU64,
    pub(super) stop: AtomicBool,
}

impl Shared {
    pub(super) fn base_headers(&self) -> HeaderMap {
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

    pub(super) async fn post_to(
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

pub(super) struct Session {
    pub(super) id: HeaderValue,
}

pub(super) async fn with_timeout<T>(
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
pub(super) async fn initialize(shared: &Shared) -> Result<(Session, HeaderValue), Failure> {
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
pub(super) async fn close_session(shared: &Shared, session: &Session) -> bool {
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
