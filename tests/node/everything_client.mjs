// A real client (the official TypeScript SDK) driving @modelcontextprotocol/server-everything
// through the edge over HTTPS. Env: MCP_EDGE_URL, MCP_EDGE_KEY; trust the test CA with
// NODE_EXTRA_CA_CERTS. Prints one JSON line with what it saw. Run by tests/suites/backends.rs.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.env.MCP_EDGE_URL);
const transport = new StreamableHTTPClientTransport(url, {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_EDGE_KEY}` } },
});
const client = new Client({ name: "edge-e2e", version: "1.0.0" }, { capabilities: { sampling: {}, roots: { listChanged: true } } });
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: "file:///edge-test-root", name: "edge-root" }] }));
client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
  role: "assistant",
  content: { type: "text", text: `from the test client: ${request.params.messages.length} message(s)` },
  model: "test-model",
  stopReason: "endTurn",
}));
await client.connect(transport);
const tools = await client.listTools();
const echo = await client.callTool({ name: "echo", arguments: { message: "hello everything" } });
const tokens = [];
let progress = 0;
const long = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
  undefined,
  { onprogress: (p) => { progress += 1; tokens.push(p.progress); } },
);
const sampled = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 20 } });
const roots = await client.callTool({ name: "get-roots-list", arguments: {} });
const resources = await client.listResources();
const first = resources.resources[0];
const read = await client.readResource({ uri: first.uri });
const prompts = await client.listPrompts();
const prompt = await client.getPrompt({ name: "simple-prompt" });
// The SDK's DELETE: any 2xx is a success to it (the Python SDK wants 200 or 204).
let terminated = "ok";
await transport.terminateSession().catch((e) => { terminated = String(e); });
console.log(JSON.stringify({
  tools: tools.tools.length,
  echo: echo.content[0].text,
  long: long.content[0].text,
  progress,
  progressTokensOk: tokens.every((v, i) => i === 0 || v > tokens[i - 1]),
  sampling: JSON.stringify(sampled.content),
  roots: roots.content[0].text,
  resource: read.contents[0].text ?? read.contents[0].blob ?? "",
  prompts: prompts.prompts.length,
  prompt: prompt.messages[0].content.text,
  terminated,
}));
await client.close();
