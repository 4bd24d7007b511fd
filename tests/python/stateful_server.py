"""A stdio MCP server that keeps state per process, as a browser-automation server, a
logged-in CLI or a scratchpad does. No dependencies (starts in milliseconds).

Tools: `remember` (keeps `note` in this process), `recall` (`note=<what was kept>`),
`env` (the value of environment variable `name` in this process), `env_digest` (its
SHA-256 in hex, for tests that must not see the value in a log), `pid`, `fail` (a tool
error result), `progress` (one progress notification, then the answer), `slow_stream`
(one progress notification, then the answer after `seconds`), `whisper` (a log
notification carrying the kept note, then the answer), `ask` (asks its client for a
name by elicitation, then, unless `sample` is false, for a word by sampling, and answers
with both), `last_question_error` (the error its last question got, if any). Everything
it prints goes to
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
        ("ask", "asks its client (elicitation, then sampling) and answers with both"),
        ("last_question_error", "the error the last question got"),
    ]
]

note = ""
last_question_error = "<none>"
asked = 0


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


def ask_client(method, params):
    """Send a request to the client and read stdin until its answer: this server
    handles one message at a time, so the call stays pending meanwhile."""
    global asked
    asked += 1
    qid = f"q{asked}"
    send({"jsonrpc": "2.0", "id": qid, "method": method, "params": params})
    while True:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("id") == qid and "method" not in msg:
            return msg.get("result"), msg.get("error")
        if msg.get("method") and msg.get("id") is not None:
            reply(msg["id"], error={"code": -32000, "message": "busy with a question"})


def ask_tool(args):
    global last_question_error
    answer, error = ask_client("elicitation/create", {
        "mode": "form",
        "message": "What is your name?",
        "requestedSchema": {"type": "object",
                            "properties": {"name": {"type": "string"}},
                            "required": ["name"]},
    })
    if error is not None:
        last_question_error = error.get("message", "?")
        return text("elicitation failed: " + last_question_error, is_error=True)
    if answer.get("action") != "accept":
        return text("name=<" + str(answer.get("action")) + ">")
    name = (answer.get("content") or {}).get("name", "")
    if args.get("sample") is False:
        return text("name=" + name)
    answer, error = ask_client("sampling/createMessage", {
        "messages": [{"role": "user", "content": {"type": "text", "text": "Say a word"}}],
        "maxTokens": 10,
    })
    if error is not None:
        last_question_error = error.get("message", "?")
        return text("sampling failed: " + last_question_error, is_error=True)
    word = (answer.get("content") or {}).get("text", "")
    return text(f"name={name} word={word}")


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
        elif name == "ask":
            reply(id_, ask_tool(args))
        elif name == "last_question_error":
            reply(id_, text(last_question_error))
        else:
            reply(id_, error={"code": -32602, "message": f"unknown tool {name}"})
    else:
        reply(id_, error={"code": -32601, "message": f"method not found: {method}"})
