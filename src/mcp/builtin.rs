//! The built-in docs backend: `search_docs` and `read_doc` tools, docs as resources.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::docs::{DocsError, DocsIndex};

/// Resource URIs are `docs:///<relative path>`.
pub const URI_PREFIX: &str = "docs:///";
const PAGE_SIZE: usize = 200;
const DEFAULT_LIMIT: usize = 10;

#[derive(Clone)]
pub struct DocsBackend {
    docs: Arc<DocsIndex>,
}

fn schema(value: Value) -> Arc<serde_json::Map<String, Value>> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(serde_json::Map::new()),
    }
}

/// The tools, built once: rmcp asks for a tool's schema on every stateless call
/// (`Mcp-Param-*` header checks), and building the JSON schemas each time cost
/// more than the rest of a `tools/list`.
fn tools() -> &'static [Tool] {
    static TOOLS: std::sync::LazyLock<Vec<Tool>> = std::sync::LazyLock::new(build_tools);
    &TOOLS
}

fn build_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "search_docs",
            "Full-text search (BM25) over the documentation served by this edge. Returns ranked hits with path, title and a snippet; read a hit with read_doc.",
            schema(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Words to search for", "minLength": 1},
                    "limit": {"type": "integer", "description": "Maximum hits (1-50)", "minimum": 1, "maximum": 50, "default": DEFAULT_LIMIT}
                },
                "required": ["query"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            "read_doc",
            "Read one document by the path returned from search_docs.",
            schema(json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Relative path, e.g. guide/setup.md"}
                },
                "required": ["path"],
                "additionalProperties": false
            })),
        ),
    ]
}

fn mime_for(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".md") || lower.ends_with(".markdown") || lower.ends_with(".mdx") {
        "text/markdown"
    } else {
        "text/plain"
    }
}

fn string_arg<'a>(
    args: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, ErrorData> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ErrorData::invalid_params(
            format!("`{name}` must be a string"),
            None,
        )),
        None => Err(ErrorData::invalid_params(
            format!("missing required argument `{name}`"),
            None,
        )),
    }
}

/// Map a docs error to what the caller should see: a tool error they can act on.
fn tool_error(e: &DocsError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.to_string())])
}

impl DocsBackend {
    pub fn new(docs: Arc<DocsIndex>) -> DocsBackend {
        DocsBackend { docs }
    }

    async fn search(
        &self,
        args: &serde_json::Map<String, Value>,
    ) -> Result<CallToolResult, ErrorData> {
        let query = string_arg(args, "query")?;
        let limit = match args.get("limit") {
            None | Some(Value::Null) => DEFAULT_LIMIT,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=50).contains(&n) => n as usize,
                _ => {
                    return Err(ErrorData::invalid_params(
                        "`limit` must be an integer from 1 to 50",
                        None,
                    ));
                }
            },
        };
        // Inline, not `spawn_blocking`: a query over an in-memory index (query
        // length and hit count bounded) takes tens of microseconds, less than the
        // blocking pool's thread hand-off costs. Reads, which touch the disk, still
        // go to the pool.
        let hits = match self.docs.search(query, limit) {
            Ok(hits) => hits,
            Err(e) => return Ok(tool_error(&e)),
        };
        let mut text = String::new();
        if hits.is_empty() {
            text.push_str("No matching documents.");
        }
        for (i, hit) in hits.iter().enumerate() {
            text.push_str(&format!(
                "{}. {} ({})\n   {}\n",
                i + 1,
                hit.title,
                hit.path,
                hit.snippet.replace('\n', " ")
            ));
        }
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(json!({ "hits": hits }));
        Ok(result)
    }

    async fn read(
        &self,
        args: &serde_json::Map<String, Value>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = string_arg(args, "path")?.to_owned();
        let docs = self.docs.clone();
        let result = tokio::task::spawn_blocking(move || docs.read(&path))
            .await
            .map_err(|e| ErrorData::internal_error(format!("read task failed: {e}"), None))?;
        Ok(match result {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(e) => tool_error(&e),
        })
    }
}

impl ServerHandler for DocsBackend {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Documentation served by mcp-edge. Use search_docs to find documents, then read_doc (or the docs:/// resources) to read them.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let visible = tools()
            .iter()
            .filter(|t| super::tool_allowed(&context, &t.name).is_ok())
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Err(denied) = super::tool_allowed(&context, &request.name) {
            return Err(super::tool_denied_error(&denied));
        }
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "search_docs" => self.search(&args).await?,
            "read_doc" => self.read(&args).await?,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| ErrorData::invalid_params("invalid cursor", None))?,
        };
        let all = self.docs.list();
        let page: Vec<Resource> = all
            .iter()
            .skip(start)
            .take(PAGE_SIZE)
            .map(|d| {
                Resource::new(format!("{URI_PREFIX}{}", d.path), d.path.clone())
                    .with_title(d.title.clone())
                    .with_mime_type(mime_for(&d.path))
                    .with_size(d.bytes)
            })
            .collect();
        let mut result = ListResourcesResult::with_all_items(page);
        if start + PAGE_SIZE < all.len() {
            result.next_cursor = Some((start + PAGE_SIZE).to_string());
        }
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{URI_PREFIX}{{path}}"), "doc")
                .with_description("A document by its relative path"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let Some(path) = uri.strip_prefix(URI_PREFIX) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {uri:?} (docs resources start with {URI_PREFIX})"),
                None,
            ));
        };
        let docs = self.docs.clone();
        let owned = path.to_owned();
        let text = tokio::task::spawn_blocking(move || docs.read(&owned))
            .await
            .map_err(|e| ErrorData::internal_error(format!("read task failed: {e}"), None))?
            .map_err(|e| match e {
                DocsError::NotFound(_) => ErrorData::resource_not_found(e.to_string(), None),
                other => ErrorData::invalid_params(other.to_string(), None),
            })?;
        let mime = mime_for(path);
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri.clone()).with_mime_type(mime),
        ])
        .into())
    }
}
