"""A minimal stdio MCP server with no dependencies (starts in milliseconds), for the
process-handling tests: 200 sessions, crashes, hangs, timeouts.

Tools: `echo` (text), `pid` (its pid and process group), `crash` (exits mid-call),
`hang` (never answers), `slow` (answers after a while), `garbage` (writes a non-JSON line instead of answering). Starts a grandchild (`sleep`) in its own process group when
TINY_SPAWN_GRANDCHILD=1, to check the whole group is stopped.
"""

import json
import os
import subprocess
import sys

TOOLS = [
    {"name": n, "description": d, "inputSchema": {"type": "object"}}
    for n, d in [
        ("echo", "echo text"),
        ("pid", "pid and pgid"),
        ("crash", "exit mid-call"),
        ("hang", "never answer"),
        ("garbage", "write non-JSON to stdout instead of an answer"),
        ("slow", "answer after `seconds`"),
    ]
]

if os.environ.get("TINY_SPAWN_GRANDCHILD") == "1":
    subprocess.Popen(["sleep", "600"])

if os.environ.get("TINY_SPAWN_ORPHAN") == "1":
    # The shell exits at once; its background job is re-parented to PID 1 and exits
    # shortly after. Unless PID 1 reaps it, it stays a zombie.
    subprocess.Popen(["sh", "-c", "(sleep 0.3; exit 0) & exit 0"]).wait()


def reply(id_, result=None, error=None):
    msg = {"jsonrpc": "2.0", "id": id_}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def text(t):
    return {"content": [{"type": "text", "text": t}]}


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, id_ = msg.get("method"), msg.get("id")
    if id_ is None:
        continue
    params = msg.get("params") or {}
    if method == "initialize":
        reply(id_, {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "1"},
        })
    elif method == "ping":
        reply(id_, {})
    elif method == "tools/list":
        reply(id_, {"tools": TOOLS})
    elif method == "tools/call":
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "echo":
            reply(id_, text("echo: " + str(args.get("text", ""))))
        elif name == "pid":
            reply(id_, text(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0)})))
        elif name == "crash":
            os._exit(7)
        elif name == "hang":
            pass
        elif name == "slow":
            import time

            time.sleep(float(args.get("seconds", 1)))
            reply(id_, text("slow done"))
        elif name == "garbage":
            sys.stdout.write("Traceback (most recent call last): oops\n")
            sys.stdout.flush()
        else:
            reply(id_, error={"code": -32602, "message": f"unknown tool {name}"})
    else:
        reply(id_, error={"code": -32601, "message": f"method not found: {method}"})
