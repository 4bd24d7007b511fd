// mcp-remote (the stdio↔HTTP bridge many desktop clients use) signing in to the edge by
// OAuth, as it does for a server without a configured header: it registers, prints the
// authorization URL, and waits on its own callback server; a real browser
// (browser_sign_in.mjs) signs the person in with their API key and follows the redirect
// to that callback. Driven by the official TypeScript SDK over mcp-remote's stdio.
// Env: MCP_EDGE_URL, MCP_EDGE_KEY, NODE_EXTRA_CA_CERTS, HOME (mcp-remote's state).
// Prints one JSON line with the tools seen and the result of a call.
import net from "node:net";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { signIn } from "./browser_sign_in.mjs";

const proxy = fileURLToPath(new URL("./node_modules/mcp-remote/dist/proxy.js", import.meta.url));
const callbackPort = await freeCallbackPort();
let stderr = "";
let signing = null;
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [proxy, process.env.MCP_EDGE_URL, callbackPort],
  // No desktop to open a browser on: mcp-remote prints the URL, the test's browser opens it.
  env: { ...process.env, BROWSER: "none", DISPLAY: "" },
  stderr: "pipe",
});
transport.stderr?.on("data", (d) => {
  stderr += d;
  const m = stderr.match(/Please authorize this client by visiting:\s*(\S+)/);
  if (m && !signing) {
    signing = signIn(m[1], process.env.MCP_EDGE_KEY, { follow: true }).catch((e) => {
      console.error(`browser sign-in failed: ${e}\nmcp-remote said:\n${stderr}`);
      process.exit(3);
    });
  }
});
const client = new Client({ name: "edge-mcp-remote-oauth", version: "1.0.0" });
const timer = setTimeout(() => { console.error(`timed out; mcp-remote said:\n${stderr}`); process.exit(2); }, 60000);
try {
  await client.connect(transport);
  const tools = await client.listTools();
  const result = await client.callTool({ name: "search_docs", arguments: { query: "tls" } });
  console.log(JSON.stringify({
    tools: tools.tools.map((t) => t.name).sort(),
    text: result.content[0].text,
    signedIn: signing !== null,
  }));
  await client.close();
} catch (e) {
  console.error(`failed: ${e}\nmcp-remote said:\n${stderr}`);
  process.exit(1);
}
clearTimeout(timer);

// A port for mcp-remote's callback server, taken outside Linux's ephemeral range
// (32768-60999), where every other test's sockets get theirs: a random port inside it
// was once taken by another test before mcp-remote bound it (EADDRINUSE under load).
async function freeCallbackPort() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 61000 + Math.floor(Math.random() * 4500);
    const free = await new Promise((resolve) => {
      const probe = net.createServer();
      probe.once("error", () => resolve(false));
      probe.listen(port, () => probe.close(() => resolve(true)));
    });
    if (free) return String(port);
  }
  throw new Error("no free port for mcp-remote's callback in 61000-65499");
}
