//! `MCP_TRANSPORT=stdio`: the same backend over stdin/stdout of a child process.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn stdio_mode_answers_an_mcp_client() {
    let fx = Fixture::new();
    let mut cmd = tokio::process::Command::new(bin());
    cmd.env_clear()
        .env("MCP_TRANSPORT", "stdio")
        .env("MCP_DOCS_DIR", &fx.docs_dir)
        .env("MCP_LOG_LEVEL", "debug")
        // Debug logs go to stderr, never stdout (which carries the protocol).
        .stderr(std::process::Stdio::null());
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.expect("stdio handshake");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 2);
    let result = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(json!({"query": "rustls"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let hits = &result.structured_content.unwrap()["hits"];
    assert_eq!(hits[0]["path"], "guide/tls.md");
    client.cancel().await.unwrap();
}
