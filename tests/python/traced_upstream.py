"""An MCP server (official Python SDK) behind the edge in the tracing integration tests.

It shows what trace context reached the upstream: the `meta` tool returns the `_meta` of
the tools/call request as the server received it (traceparent, tracestate, ...), and in
HTTP mode `--headers-out` logs the W3C trace headers of every HTTP request.

    python3 traced_upstream.py --stdio
    python3 traced_upstream.py --http-port N [--headers-out FILE]

HTTP mode serves Streamable HTTP at http://127.0.0.1:N/mcp (the SDK's default session
mode); port 0 picks a free port. Once listening it prints one line on stdout:
`{"ready": true, "port": P}`. `--headers-out` appends one JSON line per HTTP request:
`{"method", "path", "traceparent", "tracestate", "mcp_method", "authorization_present"}`.

Tools: `echo(text)`, `meta()` (this request's `_meta` as a JSON object), `crash()`
(exits the process at once, mid-call, with status 3).
"""

import argparse
import json
import os
import socket
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("traced-upstream")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
def meta(ctx: Context) -> dict[str, Any]:
    """The `_meta` of this request as the server received it (every key)."""
    # The raw params keep the wire's keys; `ctx.request_context.meta` is the SDK's parsed
    # copy, which renames `progressToken` to `progress_token`.
    raw = (ctx.request_context.params or {}).get("_meta")
    return dict(raw) if isinstance(raw, dict) else dict(ctx.request_context.meta or {})


@server.tool()
def crash() -> str:
    """Exit the process immediately (simulates a crash mid-call)."""
    print("crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


def _jsonrpc_method(body: bytes):
    """The JSON-RPC method of a POST body (a list of them for a batch); None if none."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, list):
        methods = [m.get("method") for m in doc if isinstance(m, dict)]
        return methods or None
    return doc.get("method") if isinstance(doc, dict) else None


class HeadersLog:
    """ASGI middleware: one JSON line per HTTP request to `path`, then the wrapped app."""

    def __init__(self, app, path):
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        mcp_method = None
        if scope["method"] == "POST":
            # Read the whole body, then replay it to the app; later receives pass through.
            chunks, more = [], True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            mcp_method = _jsonrpc_method(body)
            replayed = False
            original_receive = receive

            async def receive():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await original_receive()

        line = {
            "method": scope["method"],
            "path": scope["path"],
            "traceparent": headers.get("traceparent"),
            "tracestate": headers.get("tracestate"),
            "mcp_method": mcp_method,
            "authorization_present": "authorization" in headers,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
        await self.app(scope, receive, send)


def serve_http(port, headers_out):
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")
    if headers_out:
        open(headers_out, "a").close()
        app = HeadersLog(app, headers_out)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(json.dumps({"ready": True, "port": bound}), flush=True)

    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    ReadyServer(config).run(sockets=[sock])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="serve MCP over stdin/stdout")
    mode.add_argument("--http-port", type=int, help="serve Streamable HTTP on 127.0.0.1:N/mcp")
    parser.add_argument("--headers-out", help="HTTP mode: JSON lines file, one per request")
    args = parser.parse_args()
    if args.stdio:
        print("traced-upstream starting (stdio)", file=sys.stderr, flush=True)
        server.run("stdio")
    else:
        serve_http(args.http_port, args.headers_out)


if __name__ == "__main__":
    main()
