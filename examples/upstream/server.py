"""Example upstream MCP server for the Compose set-up (the official Python SDK's MCPServer).

It listens on plain HTTP on the Compose *internal* network only; mcp-edge terminates TLS,
authenticates clients and forwards MCP calls here through its HTTP backend. The edge
proves itself with a bearer token read from a secret file (UPSTREAM_TOKEN_FILE), which
this server compares in constant time. GET /healthz answers without the token.
"""

import hmac
import os
import pathlib

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

TOKEN_FILE = pathlib.Path(os.environ.get("UPSTREAM_TOKEN_FILE", "/run/secrets/upstream_token"))
HOST = os.environ.get("UPSTREAM_HOST", "0.0.0.0")
PORT = int(os.environ.get("UPSTREAM_PORT", "8000"))
# Host header values accepted (DNS-rebinding protection): the Compose service name.
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("UPSTREAM_ALLOWED_HOSTS", "upstream:*,localhost:*,127.0.0.1:*").split(",")
    if h.strip()
]

server = MCPServer("example-upstream", instructions="Arithmetic and echo tools behind mcp-edge.")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def require_token(app, token: bytes):
    """ASGI middleware: every request except GET /healthz needs `Authorization: Bearer <token>`."""

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        presented = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
        if not hmac.compare_digest(presented, token):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"www-authenticate", b'Bearer realm="upstream"')]})
            return await send({"type": "http.response.body", "body": b""})
        return await app(scope, receive, send)

    return guarded


def main() -> None:
    token = TOKEN_FILE.read_bytes().strip()
    if len(token) < 16:
        raise SystemExit(f"{TOKEN_FILE}: the upstream token must be at least 16 characters")
    app = server.streamable_http_app(
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=ALLOWED_HOSTS
        ),
    )
    uvicorn.run(require_token(app, token), host=HOST, port=PORT, log_level="info")


if __name__ == "__main__":
    main()
