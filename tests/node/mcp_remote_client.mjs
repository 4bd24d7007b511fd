// mcp-remote (the stdio↔HTTP bridge many desktop clients use) connecting to the edge with
// `--header "Authorization: Bearer <key>"`, driven by the official TypeScript SDK over its
// stdio. Env: MCP_EDGE_URL, MCP_EDGE_KEY; trust the test CA with NODE_EXTRA_CA_CERTS.
// Prints one JSON line with the tools seen. Run by tests/suites/auth_edges.rs.
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const proxy = fileURLToPath(new URL("./node_modules/mcp-remote/dist/proxy.js", import.meta.url));
let stderr = "";
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [proxy, process.env.MCP_EDGE_URL, "--header", `Authorization: Bearer ${process.env.MCP_EDGE_KEY}`],
  env: { ...process.env },
  stderr: "pipe",
});
transport.stderr?.on("data", (d) => { stderr += d; });
const client = new Client({ name: "edge-mcp-remote", version: "1.0.0" });
const timer = setTimeout(() => { console.error(`timed out; mcp-remote said:\n${stderr}`); process.exit(2); }, 30000);
try {
  await client.connect(transport);
  const tools = await client.listTools();
  console.log(JSON.stringify({ tools: tools.tools.map((t) => t.name).sort(), stderr }));
  await client.close();
} catch (e) {
  console.error(`failed: ${e}\nmcp-remote said:\n${stderr}`);
  process.exit(1);
}
clearTimeout(timer);
