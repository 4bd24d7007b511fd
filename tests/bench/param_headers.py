#!/usr/bin/env python3
"""Print the Mcp-Param-* headers (SEP-2243) a stateless tools/call must carry.

stdin: a stateless tools/list reply (JSON or SSE); argv: TOOL ARGS_JSON. Every property of
the tool's inputSchema with "x-mcp-header": NAME, whose argument is a string, number or
bool, gives one "Mcp-Param-NAME: value" line (the same rule as mcp-edge bench's
param_headers). Prints nothing when the tool declares none.
"""
import json
import sys

text = sys.stdin.read()
if text.lstrip().startswith("{"):
    msg = json.loads(text)
else:  # SSE: the first data: payload that is a JSON-RPC reply
    msg = {}
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            msg = json.loads(line[5:])
            if "result" in msg or "error" in msg:
                break
tool, args = sys.argv[1], json.loads(sys.argv[2])
schema = next((t.get("inputSchema") or {} for t in msg.get("result", {}).get("tools", [])
               if t.get("name") == tool), None)
if schema is None:
    sys.exit(f"param_headers: tools/list has no tool {tool!r}: {text[:300]}")


def walk(props, path):
    for name, sub in (props or {}).items():
        header = sub.get("x-mcp-header") if isinstance(sub, dict) else None
        if header:
            v = args
            for k in path + [name]:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, bool):
                v = str(v).lower()
            if isinstance(v, (str, int, float)):
                print(f"Mcp-Param-{header}: {v}")
        if isinstance(sub, dict):
            walk(sub.get("properties"), path + [name])


walk(schema.get("properties"), [])
