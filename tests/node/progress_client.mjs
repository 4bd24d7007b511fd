// Checks that every notification a backend sends during a call reaches the client, in
// order, before the call's result (issue 8 item 11). Official TypeScript SDK client.
// Env: MCP_EDGE_URL (/mcp, or /sse for the legacy transport), MCP_EDGE_KEY, ROUNDS,
// STEPS, MODE ("progress": server-everything's trigger-long-running-operation with a
// progress token, checked at the moment the result arrives; "logging":
// tests/python/stdio_server.py's log_burst, whose logging notifications ride the GET
// stream on Streamable HTTP, so they are checked for completeness and order shortly
// after the result). Trust the test CA with NODE_EXTRA_CA_CERTS. Prints one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.env.MCP_EDGE_URL);
const key = process.env.MCP_EDGE_KEY;
const rounds = Number(process.env.ROUNDS ?? 20);
const steps = Number(process.env.STEPS ?? 4);
const mode = process.env.MODE ?? "progress";
const headers = { Authorization: `Bearer ${key}` };
const transport = url.pathname.endsWith("/sse")
  ? new SSEClientTransport(url, {
      requestInit: { headers },
      eventSourceInit: { fetch: (u, init) => fetch(u, { ...init, headers: { ...init?.headers, ...headers } }) },
    })
  : new StreamableHTTPClientTransport(url, { requestInit: { headers } });
const client = new Client({ name: "edge-progress", version: "1.0.0" }, { capabilities: {} });
const logs = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params.data); });
let lateErrors = 0;
client.onerror = (e) => { if (String(e).includes("unknown token")) lateErrors += 1; };
// What arrives on the wire, in order, before the SDK's Protocol layer sees it (the SDK
// keeps this handler and calls it first). The SDK itself runs notification handlers in
// a microtask but settles responses at once, so over the legacy SSE transport (which
// dispatches all events of one network chunk synchronously) it can drop progress that
// arrived just before the result; `sdkBad` counts that separately from the edge's order.
let wire = [];
transport.onmessage = (m) => {
  if (m.method === "notifications/progress") wire.push(m.params.progress);
  else if (m.method === "notifications/message") wire.push(m.params.data);
  else if ("result" in m || "error" in m) wire.push("result");
};
await client.connect(transport);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const bad = [];
const sdkBad = [];
for (let round = 0; round < rounds; round++) {
  if (mode === "progress") {
    const seen = [];
    wire = [];
    await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 0.004 * steps, steps } },
      undefined,
      { onprogress: (p) => { seen.push(p.progress); } },
    );
    const atResult = [...seen];
    const want = Array.from({ length: steps }, (_, i) => i + 1);
    const onWire = wire.slice(0, wire.indexOf("result") + 1);
    if (JSON.stringify(onWire) !== JSON.stringify([...want, "result"])) bad.push({ round, onWire });
    if (JSON.stringify(atResult) !== JSON.stringify(want)) sdkBad.push({ round, atResult });
  } else {
    logs.length = 0;
    wire = [];
    await client.callTool({ name: "log_burst", arguments: { count: steps, tag: `r${round}` } });
    const want = Array.from({ length: steps }, (_, i) => `r${round} line ${i + 1}`);
    // The GET stream is a different HTTP response than the result's: allow it a moment.
    for (let i = 0; i < 100 && logs.length < steps; i++) await sleep(20);
    await sleep(20);
    if (JSON.stringify(logs) !== JSON.stringify(want)) bad.push({ round, logs: [...logs] });
  }
}
console.log(JSON.stringify({
  rounds, bad: bad.length, sdkBad: sdkBad.length, lateErrors, examples: [...bad, ...sdkBad].slice(0, 3),
}));
if (transport.terminateSession) await transport.terminateSession().catch(() => {});
await client.close();
