"""A real client (official MCP Python SDK) driving a backend through the edge.

Env: MCP_EDGE_URL (the /mcp URL, or the /sse URL with --sse), MCP_EDGE_KEY,
MCP_EDGE_CA, MCP_EDGE_PREFIX (prepended to tool/prompt names, e.g. "py__"),
MCP_EDGE_URI_PREFIX (prepended to resource URIs, e.g. "py+").

Against tests/python/stdio_server.py: lists tools, calls echo, slow_count (collecting
progress), ask_model (answering the sampling request), reads a resource and a templated
one, gets a prompt. Prints one JSON line with what it saw.
"""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp import ClientSession, types


async def sampling(context, params: types.CreateMessageRequestParams):
    question = params.messages[0].content.text
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"42 (to: {question})"),
        model="test-model",
        stop_reason="endTurn",
    )


async def drive(session: ClientSession) -> dict:
    p = os.environ.get("MCP_EDGE_PREFIX", "")
    up = os.environ.get("MCP_EDGE_URI_PREFIX", "")
    init = await session.initialize()
    tools = await session.list_tools()
    echo = await session.call_tool(f"{p}echo", {"text": "hi"})
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, total, message])

    counted = await session.call_tool(f"{p}slow_count", {"steps": 3}, progress_callback=on_progress)
    sampled = await session.call_tool(f"{p}ask_model", {"question": "meaning of life?"})
    res = await session.read_resource(f"{up}note://hello")
    templ = await session.read_resource(f"{up}note://bob")
    templates = await session.list_resource_templates()
    prompt = await session.get_prompt(f"{p}greet", {"name": "Ada"})
    return {
        "server": init.server_info.name,
        "tools": sorted(t.name for t in tools.tools),
        "echo": echo.content[0].text,
        "counted": counted.content[0].text,
        "progress": progress,
        "sampled": sampled.content[0].text,
        "sampled_error": bool(getattr(sampled, "is_error", False)),
        "resource": res.contents[0].text,
        "resource_uri": str(res.contents[0].uri),
        "templated": templ.contents[0].text,
        "templates": [t.uri_template for t in templates.resource_templates],
        "prompt": prompt.messages[0].content.text,
    }


async def main() -> int:
    url = os.environ["MCP_EDGE_URL"]
    key = os.environ["MCP_EDGE_KEY"]
    ctx = ssl.create_default_context(cafile=os.environ["MCP_EDGE_CA"])
    headers = {"Authorization": f"Bearer {key}"}
    if "--sse" in sys.argv:
        from mcp.client.sse import sse_client

        def factory(headers=None, timeout=None, auth=None):
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=ctx)

        async with sse_client(url, headers=headers, httpx_client_factory=factory) as (read, write):
            async with ClientSession(read, write, sampling_callback=sampling) as session:
                seen = await drive(session)
    else:
        from mcp.client.streamable_http import streamable_http_client

        async with httpx2.AsyncClient(headers=headers, verify=ctx, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1], sampling_callback=sampling) as session:
                    seen = await drive(session)
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
