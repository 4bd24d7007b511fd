// The official TypeScript SDK driving several edge replicas behind an L4 balancer.
// Every HTTP request opens a new connection (agent: false, Connection: close), so the
// requests of one session land on different replicas. Env: MCP_EDGE_URL, MCP_EDGE_KEY;
// trust the test CA with NODE_EXTRA_CA_CERTS. Against tests/python/stdio_server.py:
// initialize, list tools, 20 calls, the stateful `count`, progress and sampling. Prints one
// JSON line. Run by tests/suites/replicas.rs.
import https from "node:https";
import { Readable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

let connections = 0;

// fetch over a fresh TLS connection per request.
function freshConnectionFetch(input, init = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const headers = {};
    new Headers(init.headers ?? {}).forEach((v, k) => { headers[k] = v; });
    headers.connection = "close";
    connections += 1;
    const req = https.request(url, { method: init.method ?? "GET", headers, agent: false }, (res) => {
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) v.forEach((x) => h.append(k, x));
        else if (v !== undefined) h.set(k, v);
      }
      const empty = [204, 205, 304].includes(res.statusCode);
      resolve(new Response(empty ? null : Readable.toWeb(res), { status: res.statusCode, statusText: res.statusMessage, headers: h }));
    });
    req.on("error", reject);
    if (init.signal) {
      if (init.signal.aborted) { req.destroy(); reject(init.signal.reason); return; }
      init.signal.addEventListener("abort", () => req.destroy(new Error("aborted")), { once: true });
    }
    req.end(init.body === undefined || init.body === null ? undefined : init.body);
  });
}

const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_EDGE_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_EDGE_KEY}` } },
  fetch: freshConnectionFetch,
});
const client = new Client({ name: "edge-replicas", version: "1.0.0" }, { capabilities: { sampling: {} } });
client.setRequestHandler(CreateMessageRequestSchema, async () => ({
  role: "assistant",
  content: { type: "text", text: "forty-two" },
  model: "test-model",
  stopReason: "endTurn",
}));
await client.connect(transport);
const tools = await client.listTools();
const echoes = [];
for (let i = 0; i < 20; i++) {
  const r = await client.callTool({ name: "echo", arguments: { text: `call ${i}` } });
  echoes.push(r.content[0].text);
}
const counts = [];
for (let i = 0; i < 5; i++) {
  const r = await client.callTool({ name: "count", arguments: {} });
  counts.push(r.content[0].text);
}
const progress = [];
const counted = await client.callTool({ name: "slow_count", arguments: { steps: 4 } }, undefined, {
  onprogress: (p) => progress.push(p.progress),
});
const sampled = await client.callTool({ name: "ask_model", arguments: { question: "meaning of life?" } });
console.log(JSON.stringify({
  session: transport.sessionId,
  tools: tools.tools.map((t) => t.name).sort(),
  echoes,
  counts,
  counted: counted.content[0].text,
  progress,
  sampled: sampled.content[0].text,
  connections,
}));
await transport.terminateSession().catch(() => {});
await client.close();
