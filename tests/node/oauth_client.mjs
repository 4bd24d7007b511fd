// The official TypeScript SDK as an OAuth client of the edge: discovery, registration
// (DCR, or a client ID metadata document with MCP_CLIENT_METADATA_URL), the person's
// sign-in in a real browser (browser_sign_in.mjs), the code exchange, a tool call,
// then (with MCP_WAIT_FOR_EXPIRY_MS) a wait past the access token's expiry and another
// call, which the SDK makes by refreshing. Prints one JSON line of what it saw.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { signIn } from "./browser_sign_in.mjs";

const url = new URL(process.env.MCP_EDGE_URL);
const key = process.env.MCP_EDGE_KEY;
const metadataUrl = process.env.MCP_CLIENT_METADATA_URL || undefined;
const waitForExpiry = Number(process.env.MCP_WAIT_FOR_EXPIRY_MS || 0);
// Sign in through the team's identity provider as this login (else paste the API key).
const idpLogin = process.env.MCP_IDP_LOGIN || null;
// Loopback redirect: any port is accepted for a registered loopback URI (RFC 8252).
const redirectUrl = "http://127.0.0.1:" + (40000 + Math.floor(Math.random() * 20000)) + "/callback";

const seen = { registered: null, refreshed: 0, tokens: 0 };
let pendingCode = null;

const provider = {
  _client: undefined,
  _tokens: undefined,
  _verifier: undefined,
  get redirectUrl() { return redirectUrl; },
  get clientMetadataUrl() { return metadataUrl; },
  get clientMetadata() {
    return {
      client_name: "TS SDK test client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientInformation() { return this._client; },
  saveClientInformation(info) {
    this._client = info;
    seen.registered = info.client_id.startsWith("https://") ? "cimd" : "dcr";
  },
  tokens() { return this._tokens; },
  saveTokens(tokens) {
    if (this._tokens) seen.refreshed += 1;
    seen.tokens += 1;
    this._tokens = tokens;
  },
  async redirectToAuthorization(authorizationUrl) {
    const back = new URL(await signIn(authorizationUrl.toString(), key, { idpLogin }));
    if (back.searchParams.get("iss") !== url.origin) throw new Error("no iss in the answer");
    pendingCode = back.searchParams.get("code");
  },
  saveCodeVerifier(v) { this._verifier = v; },
  codeVerifier() { return this._verifier; },
};

async function connect() {
  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  const client = new Client({ name: "oauth-test", version: "1" });
  try {
    await client.connect(transport);
    return { client, transport };
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !pendingCode) throw e;
    await transport.finishAuth(pendingCode);
    pendingCode = null;
    const again = new StreamableHTTPClientTransport(url, { authProvider: provider });
    const client2 = new Client({ name: "oauth-test", version: "1" });
    await client2.connect(again);
    return { client: client2, transport: again };
  }
}

const { client, transport } = await connect();
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
const first = await client.callTool({ name: "search_docs", arguments: { query: "tls" } });
let second = null;
if (waitForExpiry > 0) {
  await new Promise((r) => setTimeout(r, waitForExpiry));
  try {
    const r = await client.callTool({ name: "search_docs", arguments: { query: "rate" } });
    second = r.content[0].text;
  } catch (e) {
    second = `ERR: ${e}`;
  }
}
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify({
  ...seen,
  tools,
  first: first.content[0].text,
  second,
}));
