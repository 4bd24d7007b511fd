"""A stdio MCP server that keeps state per process, as a browser-automation server, a
logged-in CLI or a scratchpad does. No dependencies (starts in milliseconds).

Tools: `remember` (keeps `note` in this process), `recall` (`note=<what was kept>`),
`env` (the value of environment variable `name` in this process), `env_digest` (its
SHA-256 in hex, for tests that must not see the value in a log), `pid`, `fail` (a tool
error result), `progress` (one progress notification, then the answer), `slow_stream`
(one progress notification, then the answer after `seconds`), `whisper` (a log
notification carrying the kept note, then the answer). Everything it prints goes to
stdout as one JSON line; stderr gets a line per call, to check it stays with its
principal.
"""

import hashlib
import json
import os
import sys
import time

TOOLS = [
    {"name": n, "description": d, "inputSchema": {"type": "object"}}
    for n, d in [
        ("remember", "keep `note` in this process"),
        ("recall", "what this process keeps"),
        ("env", "the value of environment variable `name`"),
        ("env_digest", "the SHA-256 (hex) of environment variable `name`"),
        ("pid", "this process's pid"),
        ("fail", "a tool error"),
        ("progress", "a progress notification, then the answer"),
        ("slow_stream", "a progress notification, then the answer after `seconds`"),
        ("whisper", "a log notification with the kept note, then the answer"),
    ]
]

note = ""


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def reply(id_, result=None, error=None):
    msg = {"jsonrpc": "2.0", "id": id_}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    send(msg)


def text(t, is_error=False):
    result = {"content": [{"type": "text", "text": t}]}
    if is_error:
        result["isError"] = True
    return result


def progress(params):
    token = (params.get("_meta") or {}).get("progressToken")
    if token is not None:
        send({"jsonrpc": "2.0", "method": "notifications/progress",
              "params": {"progressToken": token, "progress": 1, "total": 2}})


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
            "capabilities": {"tools": {}, "logging": {}},
            "serverInfo": {"name": "stateful", "version": "1"},
        })
    elif method == "ping":
        reply(id_, {})
    elif method == "tools/list":
        reply(id_, {"tools": TOOLS})
    elif method == "tools/call":
        name = params.get("name")
        args = params.get("arguments") or {}
        print(f"call {name} note={note}", file=sys.stderr, flush=True)
        if name == "remember":
            note = str(args.get("note", ""))
            reply(id_, text("kept"))
        elif name == "recall":
            reply(id_, text("note=" + note))
        elif name == "env":
            reply(id_, text(os.environ.get(str(args.get("name", "")), "<unset>")))
        elif name == "env_digest":
            value = os.environ.get(str(args.get("name", "")))
            digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else "<unset>"
            reply(id_, text(digest))
        elif name == "pid":
            reply(id_, text(str(os.getpid())))
        elif name == "fail":
            reply(id_, text("it failed", is_error=True))
        elif name == "progress":
            progress(params)
            reply(id_, text("done"))
        elif name == "slow_stream":
            progress(params)
            time.sleep(float(args.get("seconds", 1)))
            reply(id_, text("slow done"))
        elif name == "whisper":
            send({"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "info", "data": "note=" + note}})
            reply(id_, text("whispered"))
        else:
            reply(id_, error={"code": -32602, "message": f"unknown tool {name}"})
    else:
        reply(id_, error={"code": -32601, "message": f"method not found: {method}"})
