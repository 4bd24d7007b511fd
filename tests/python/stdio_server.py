"""A small MCP server written with the official Python SDK, run by the edge as a stdio
backend in the integration tests (tests/suites/backends.rs).

Tools: `echo`, `count` (a per-process counter), `announce` (an unrelated
notification), `slow_count` (reports progress), `ask_model` (a sampling round trip to
the client), `whoami` (pid and environment seen by the child), `crash` (exits at once,
mid-call), `hang` (never answers; for timeouts), `wait_for_cancel` (notes its
cancellation), `log_burst` (logging notifications, then the result). A resource
`note://hello`, a template `note://{name}`, and a prompt `greet`.
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import SamplingMessage, TextContent

server = MCPServer("py-test-server")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
async def slow_count(steps: int, ctx: Context) -> str:
    """Count to `steps`, reporting progress after each step."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
        await asyncio.sleep(0.05)
    return f"counted to {steps}"


@server.tool()
async def ask_model(question: str, ctx: Context) -> str:
    """Ask the client's model (sampling) and return its answer."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=question))],
        max_tokens=50,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, TextContent) else str(content)
    return f"model said: {text}"


_count = 0


@server.tool()
def count() -> int:
    """Add one to this process's counter and return it (state across calls of a session)."""
    global _count
    _count += 1
    return _count


@server.tool()
async def announce(ctx: Context) -> str:
    """Send a notification not tied to this request (reaches the session's GET stream)."""
    await ctx.session.send_resource_list_changed()
    return "announced"


@server.tool()
def whoami() -> dict:
    """The child's pid, process group and a few environment variables."""
    return {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "greeting": os.environ.get("GREETING"),
        "api_keys_file": os.environ.get("MCP_API_KEYS_FILE"),
        "cwd": os.getcwd(),
    }


@server.tool()
def crash() -> str:
    """Exit the process immediately (simulates a crash mid-call)."""
    print("crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return "unreachable"


@server.tool()
async def wait_for_cancel(path: str) -> str:
    """Wait until cancelled; then write "cancelled" to `path`."""
    try:
        await asyncio.sleep(60)
    except BaseException:
        with open(path, "w") as f:
            f.write("cancelled")
        raise
    return "not cancelled"


@server.tool()
async def log_burst(count: int, tag: str, ctx: Context) -> str:
    """Send `count` logging notifications ("<tag> line <i>"), then answer."""
    for i in range(1, count + 1):
        await ctx.info(f"{tag} line {i}")
    return f"logged {count}"


@server.resource("note://hello")
def hello_note() -> str:
    """A fixed note."""
    return "hello from python"


@server.resource("note://{name}")
def named_note(name: str) -> str:
    """A note by name."""
    return f"note {name}"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Please greet {name} warmly."


if __name__ == "__main__":
    print("py-test-server starting", file=sys.stderr, flush=True)
    server.run("stdio")
