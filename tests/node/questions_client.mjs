// The official TypeScript SDK v2 client in 2026-07-28 (stateless) mode, answering a
// stdio backend's questions through the edge: the backend's elicitation and sampling
// requests come back as `input_required` results, the SDK's multi-round-trip driver
// answers them with the handlers below and retries the call. Env: MCP_EDGE_URL,
// MCP_EDGE_KEY; trust the test CA with NODE_EXTRA_CA_CERTS. Against the `ask` tool of
// tests/python/stateful_server.py. Prints one JSON line. Run by tests/suites/questions.rs.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const client = new Client(
  { name: "questions-client", version: "1" },
  {
    capabilities: { elicitation: { form: {} }, sampling: {} },
    versionNegotiation: { mode: { pin: "2026-07-28" } },
  },
);
const seen = [];
client.setRequestHandler("elicitation/create", async (request) => {
  seen.push(`elicitation: ${request.params.message}`);
  return { action: "accept", content: { name: "Ada" } };
});
client.setRequestHandler("sampling/createMessage", async (request) => {
  seen.push(`sampling: ${request.params.messages[0].content.text}`);
  return { model: "test-model", role: "assistant", content: { type: "text", text: "lighthouse" } };
});
const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_EDGE_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_EDGE_KEY}` } },
});
await client.connect(transport);
const result = await client.callTool({ name: "ask", arguments: {} });
console.log(JSON.stringify({
  text: result.content?.[0]?.text,
  isError: result.isError ?? false,
  seen,
  sessionId: transport.sessionId ?? null,
}));
await client.close();
