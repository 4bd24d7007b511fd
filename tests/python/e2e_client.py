"""End-to-end check with the official MCP Python SDK over HTTPS.

Connects to MCP_EDGE_URL with `Authorization: Bearer $MCP_EDGE_KEY`, trusting the CA
bundle at MCP_EDGE_CA, then initializes, lists tools, calls search_docs with the query
in MCP_EDGE_QUERY and reads the first hit as a resource. Prints one JSON line with what
it saw; exits non-zero on any failure. Run by tests/suites/python_sdk.rs.
"""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main() -> int:
    url = os.environ["MCP_EDGE_URL"]
    key = os.environ["MCP_EDGE_KEY"]
    query = os.environ.get("MCP_EDGE_QUERY", "edge")
    ctx = ssl.create_default_context(cafile=os.environ["MCP_EDGE_CA"])
    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, verify=ctx, timeout=30
    ) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool(
                    "search_docs", {"query": query, "limit": 5}
                )
                if getattr(result, "is_error", False):
                    print(f"search_docs failed: {result}", file=sys.stderr)
                    return 1
                hits = (result.structured_content or {}).get("hits", [])
                text = result.content[0].text if result.content else ""
                resource_text = None
                if hits:
                    res = await session.read_resource(f"docs:///{hits[0]['path']}")
                    resource_text = res.contents[0].text
                print(
                    json.dumps(
                        {
                            "server": init.server_info.name,
                            "protocol": str(init.protocol_version),
                            "tools": sorted(t.name for t in tools.tools),
                            "hits": [h["path"] for h in hits],
                            "text": text,
                            "resource_len": len(resource_text or ""),
                        }
                    )
                )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
