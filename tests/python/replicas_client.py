"""The official MCP Python SDK driving several edge replicas behind an L4 balancer.

Every HTTP request opens a new connection (no keep-alive), so the requests of one session
land on different replicas. Env: MCP_EDGE_URL, MCP_EDGE_KEY, MCP_EDGE_CA.

Talks a line protocol with the test (tests/suites/replicas.rs) on stdin/stdout:
1. runs a session against tests/python/stdio_server.py (initialize, list tools, 20 calls,
   the stateful `count`, progress from `slow_count`, a sampling round trip from `ask_model`)
   and prints one JSON line with what it saw and its session id;
2. waits for a line on stdin (the test stops a replica meanwhile), calls `count` on the
   same session, prints whether that failed; then re-initializes as the MCP spec says a
   client must after a 404, calls again on the new session and prints a last JSON line.
"""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp import ClientSession, types


async def sampling(context, params: types.CreateMessageRequestParams):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="forty-two"),
        model="test-model",
        stop_reason="endTurn",
    )


# The session id the edge handed out last (read from responses: the SDK keeps its own
# copy private).
seen = {"session": None}


async def note_session(response) -> None:
    sid = response.headers.get("mcp-session-id")
    if sid:
        seen["session"] = sid


def http_client() -> httpx2.AsyncClient:
    ctx = ssl.create_default_context(cafile=os.environ["MCP_EDGE_CA"])
    return httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {os.environ['MCP_EDGE_KEY']}"},
        verify=ctx,
        timeout=30,
        # A new TCP connection per request: the balancer picks a replica for each.
        limits=httpx2.Limits(max_keepalive_connections=0),
        event_hooks={"response": [note_session]},
    )


def emit(value: dict) -> None:
    print(json.dumps(value), flush=True)


async def first_session(session: ClientSession) -> dict:
    await session.initialize()
    tools = await session.list_tools()
    echoes = []
    for i in range(20):
        r = await session.call_tool("echo", {"text": f"call {i}"})
        echoes.append(r.content[0].text)
    counts = []
    for _ in range(5):
        r = await session.call_tool("count", {})
        counts.append(r.content[0].text)
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    counted = await session.call_tool("slow_count", {"steps": 4}, progress_callback=on_progress)
    sampled = await session.call_tool("ask_model", {"question": "meaning of life?"})
    return {
        "session": seen["session"],
        "tools": sorted(t.name for t in tools.tools),
        "echoes": echoes,
        "counts": counts,
        "counted": counted.content[0].text,
        "progress": progress,
        "sampled": sampled.content[0].text,
    }


async def main() -> int:
    url = os.environ["MCP_EDGE_URL"]
    from mcp.client.streamable_http import streamable_http_client

    async with http_client() as http:
        async with streamable_http_client(url, http_client=http, terminate_on_close=False) as streams:
            async with ClientSession(streams[0], streams[1], sampling_callback=sampling) as session:
                emit(await first_session(session))
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                try:
                    r = await asyncio.wait_for(session.call_tool("count", {}), 20)
                    emit({"old_session_error": None, "text": r.content[0].text})
                except Exception as e:  # the owner is gone: 404, so the SDK raises
                    emit({"old_session_error": f"{type(e).__name__}: {e}"})
    # Re-initialize, as the spec says a client must after a 404 for its session.
    async with http_client() as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1], sampling_callback=sampling) as session:
                await session.initialize()
                counts = []
                for _ in range(3):
                    r = await session.call_tool("count", {})
                    counts.append(r.content[0].text)
                emit({"new_session": seen["session"], "counts": counts})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
