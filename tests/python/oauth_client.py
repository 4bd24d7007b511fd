"""The official MCP Python SDK as an OAuth client of the edge: discovery, dynamic
registration, the person's sign-in with their team API key in a real browser
(tests/node/browser_sign_in.mjs, Debian's chromium), the code exchange (PKCE, RFC 9207
`iss` checked by the SDK), then a tool call. Prints one JSON line of what it saw.

Env: MCP_EDGE_URL, MCP_EDGE_KEY (the key the person pastes), MCP_EDGE_CA.
Run by tests/suites/oauth.rs.
"""

import asyncio
import json
import os
import random
import ssl
import sys

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER = os.path.join(HERE, "..", "node", "browser_sign_in.mjs")


class Memory:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


async def main() -> int:
    url = os.environ["MCP_EDGE_URL"]
    key = os.environ["MCP_EDGE_KEY"]
    redirect = f"http://127.0.0.1:{random.randint(40000, 60000)}/callback"
    answer = {}

    async def redirect_handler(authorization_url: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "node", BROWSER, authorization_url, key,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("browser sign-in failed: " + err.decode()[-2000:])
        back = httpx2.URL(json.loads(out.decode().strip().splitlines()[-1])["redirect"])
        answer.update(dict(back.params))

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=answer["code"], state=answer.get("state"), iss=answer.get("iss")
        )

    storage = Memory()
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="Python SDK test client",
            redirect_uris=[redirect],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    ctx = ssl.create_default_context(cafile=os.environ["MCP_EDGE_CA"])
    async with httpx2.AsyncClient(auth=auth, verify=ctx, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool("search_docs", {"query": "rustls"})
                if result.is_error:
                    print(f"search_docs failed: {result}", file=sys.stderr)
                    return 1
                text = result.content[0].text
    print(json.dumps({
        "tools": sorted(t.name for t in tools.tools),
        "found": "guide/tls.md" in text,
        "registered": storage.client.client_id.startswith("mcpc.") if storage.client else None,
        "refresh": storage.tokens.refresh_token is not None if storage.tokens else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
