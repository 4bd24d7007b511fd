"""Checks that every notification a backend sends during a call reaches the client, in
order, before the call's result (issue 8 item 11). Official MCP Python SDK client.

Env: MCP_EDGE_URL (/mcp, or /sse with --sse), MCP_EDGE_KEY, MCP_EDGE_CA, ROUNDS, STEPS,
MODE: "progress" calls server-everything's trigger-long-running-operation with a
progress callback and checks what arrived when the result did; "logging" calls
tests/python/stdio_server.py's log_burst, whose logging notifications ride the GET
stream on Streamable HTTP (the one SSE stream on the legacy transport), and checks them
for completeness and order shortly after the result. Prints one JSON line.
"""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp import ClientSession, types

ROUNDS = int(os.environ.get("ROUNDS", "20"))
STEPS = int(os.environ.get("STEPS", "4"))
MODE = os.environ.get("MODE", "progress")


async def drive(session: ClientSession, logs: list) -> dict:
    await session.initialize()
    bad = []
    for rnd in range(ROUNDS):
        if MODE == "progress":
            seen = []

            async def on_progress(value, total, message):
                seen.append(value)

            await session.call_tool(
                "trigger-long-running-operation",
                {"duration": 0.004 * STEPS, "steps": STEPS},
                progress_callback=on_progress,
            )
            at_result = list(seen)
            if at_result != [float(i) for i in range(1, STEPS + 1)]:
                bad.append({"round": rnd, "at_result": at_result})
        else:
            logs.clear()
            await session.call_tool("log_burst", {"count": STEPS, "tag": f"r{rnd}"})
            want = [f"r{rnd} line {i}" for i in range(1, STEPS + 1)]
            # On Streamable HTTP the GET stream is another response than the result's.
            for _ in range(100):
                if len(logs) >= STEPS:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.02)
            if logs != want:
                bad.append({"round": rnd, "logs": list(logs)})
    return {"rounds": ROUNDS, "bad": len(bad), "examples": bad[:3]}


async def main() -> int:
    url = os.environ["MCP_EDGE_URL"]
    ctx = ssl.create_default_context(cafile=os.environ["MCP_EDGE_CA"])
    headers = {"Authorization": f"Bearer {os.environ['MCP_EDGE_KEY']}"}
    logs: list = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    if "--sse" in sys.argv:
        from mcp.client.sse import sse_client

        def factory(headers=None, timeout=None, auth=None):
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=ctx)

        async with sse_client(url, headers=headers, httpx_client_factory=factory) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log) as session:
                seen = await drive(session, logs)
    else:
        from mcp.client.streamable_http import streamable_http_client

        async with httpx2.AsyncClient(headers=headers, verify=ctx, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1], logging_callback=on_log) as session:
                    seen = await drive(session, logs)
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
