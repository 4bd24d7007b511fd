"""The cheapest stdio MCP server that still speaks the protocol: for tests/bench-proxy.sh,
so the edge's own cost per proxied call dominates. One tool, `echo`, answering its
`text`. Standard library only; one JSON line in, one out."""
import json
import sys

TOOLS = {"tools": [{"name": "echo", "description": "echo text",
                    "inputSchema": {"type": "object",
                                    "properties": {"text": {"type": "string"}}}}]}
out = sys.stdout
for line in sys.stdin:
    msg = json.loads(line)
    id_ = msg.get("id")
    if id_ is None:
        continue
    method = msg.get("method")
    if method == "tools/call":
        text = (msg["params"].get("arguments") or {}).get("text", "")
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "initialize":
        result = {"protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "echo", "version": "1"}}
    elif method == "tools/list":
        result = TOOLS
    elif method == "ping":
        result = {}
    else:
        out.write(json.dumps({"jsonrpc": "2.0", "id": id_, "error": {
            "code": -32601, "message": "method not found"}}) + "\n")
        out.flush()
        continue
    out.write(json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}) + "\n")
    out.flush()
