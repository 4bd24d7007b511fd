#!/usr/bin/env python3
"""Open MCP sessions on the edge and keep them (never DELETE): for tests/bench-path.sh.

Each session: initialize (protocol 2025-06-18) + notifications/initialized, over HTTP/1.1
keep-alive connections (a few in parallel), the server certificate checked against --ca.
With --call, each session also makes one tools/call search_docs (as most clients do
before they go away). The session ids are written to --out, one a line. --warmup N first sends N stateless
tools/list + tools/call requests (to warm the server before an idle-memory reading).
Standard library only (http.client + ssl), so it runs wherever python3 does.
Key from MCP_BENCH_KEY. Exit status 1 if any request failed.
"""
import argparse
import http.client
import json
import os
import ssl
import sys
import threading

STATELESS_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "mcp-edge-bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def parse_reply(resp, body):
    """The JSON-RPC message of a JSON or SSE reply (the first data: payload with an id)."""
    ctype = (resp.getheader("content-type") or "").lower()
    text = body.decode("utf-8", "replace")
    if ctype.startswith("text/event-stream"):
        for event in text.replace("\r\n", "\n").split("\n\n"):
            lines = [l[5:] for l in event.split("\n") if l.startswith("data:")]
            data = "\n".join(l[1:] if l.startswith(" ") else l for l in lines)
            if data.strip():
                msg = json.loads(data)
                if isinstance(msg, dict) and "id" in msg:
                    return msg
        raise RuntimeError("SSE reply without a message: " + text[:300])
    return json.loads(text)


class Client:
    def __init__(self, host, port, ctx, key):
        self.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
        self.base = {
            "Authorization": "Bearer " + key,
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }

    def post(self, payload, headers):
        h = dict(self.base)
        h.update(headers)
        self.conn.request("POST", "/mcp", body=json.dumps(payload), headers=h)
        resp = self.conn.getresponse()
        body = resp.read()
        return resp, body

    def open_session(self, call=False):
        resp, body = self.post({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "mcp-edge-bench", "version": "1"}},
        }, {})
        if resp.status != 200:
            raise RuntimeError(f"initialize: HTTP {resp.status}: {body[:300]!r}")
        sid = resp.getheader("mcp-session-id")
        msg = parse_reply(resp, body)
        if "result" not in msg or sid is None:
            raise RuntimeError(f"initialize failed (session id {sid!r}): {msg}")
        version = msg["result"].get("protocolVersion", "2025-06-18")
        resp, body = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                               {"Mcp-Session-Id": sid, "MCP-Protocol-Version": version})
        if resp.status // 100 != 2:
            raise RuntimeError(f"notifications/initialized: HTTP {resp.status}: {body[:300]!r}")
        if call:
            resp, body = self.post({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "search_docs", "arguments": {"query": "rate limits"}},
            }, {"Mcp-Session-Id": sid, "MCP-Protocol-Version": version})
            msg = parse_reply(resp, body) if resp.status == 200 else {}
            if "result" not in msg or msg["result"].get("isError"):
                raise RuntimeError(f"session tools/call: HTTP {resp.status}: {body[:300]!r}")
        return sid

    def stateless(self, method, params):
        params = dict(params, _meta=STATELESS_META)
        headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
        resp, body = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers)
        msg = parse_reply(resp, body) if resp.status == 200 else {}
        if resp.status != 200 or "result" not in msg or msg["result"].get("isError"):
            raise RuntimeError(f"stateless {method}: HTTP {resp.status}: {body[:300]!r}")
        return resp.getheader("content-type")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True, help="PEM file to trust (the dev certificate)")
    ap.add_argument("--count", type=int, default=0, help="sessions to open")
    ap.add_argument("--connections", type=int, default=4, help="parallel keep-alive connections")
    ap.add_argument("--out", help="write the session ids here")
    ap.add_argument("--call", action="store_true", help="one tools/call per session after initialize")
    ap.add_argument("--warmup", type=int, default=0, help="stateless requests to send first")
    a = ap.parse_args()
    key = os.environ["MCP_BENCH_KEY"]
    ctx = ssl.create_default_context(cafile=a.ca)

    if a.warmup:
        c = Client(a.host, a.port, ctx, key)
        for _ in range(a.warmup):
            c.stateless("tools/list", {})
            ctype = c.stateless("tools/call", {"name": "search_docs", "arguments": {"query": "rate limits"}})
        c.conn.close()
        print(f"warm-up: {2 * a.warmup} stateless requests ok (tools/call Content-Type: {ctype})",
              file=sys.stderr)

    ids, errors = [], []
    lock = threading.Lock()
    todo = iter(range(a.count))

    def run():
        c = Client(a.host, a.port, ctx, key)
        while True:
            with lock:
                if errors or next(todo, None) is None:
                    break
            try:
                sid = c.open_session(a.call)
            except Exception as e:  # noqa: BLE001 - reported, makes the run fail
                with lock:
                    errors.append(str(e))
                break
            with lock:
                ids.append(sid)
        c.conn.close()

    threads = [threading.Thread(target=run) for _ in range(max(1, min(a.connections, a.count)))]
    if a.count:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if a.out:
        with open(a.out, "w") as f:
            f.write("".join(i + "\n" for i in ids))
    if errors:
        print(f"open_sessions: {len(errors)} error(s), {len(ids)} of {a.count} opened; first: {errors[0]}",
              file=sys.stderr)
        return 1
    if a.count:
        print(f"open_sessions: {len(ids)} sessions open", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
