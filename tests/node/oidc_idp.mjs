// A real OpenID provider for the tests (oidc-provider, OpenID-certified), on loopback
// over plain HTTP: one confidential client for the edge, accounts whose login is their
// name (the development login page takes any password), each with an email
// (<login>@<domain>, verified) and groups. `POST /test/groups?login=L&groups=a,b` changes
// an account's groups while it runs (to test that a removed group ends access).
// Env: PORT, EDGE_CALLBACK (the edge's /authorize/idp/callback), CLIENT_SECRET, DOMAIN.
// Prints {"issuer": ...} once listening.
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const domain = process.env.DOMAIN || "example.com";
const groups = new Map([
  ["alice", ["eng"]],
  ["bob", ["eng", "gold-team"]],
  ["mallory", ["contractors"]],
]);

const provider = new Provider(issuer, {
  clients: [{
    client_id: "mcp-edge",
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.EDGE_CALLBACK],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@${domain}`,
      email_verified: true,
      name: id,
      groups: groups.get(id) ?? [],
    }),
  }),
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups", "offline_access"],
  // Groups in the ID token itself (not only from userinfo).
  conformIdTokenClaims: false,
  issueRefreshToken: async () => true,
  features: { devInteractions: { enabled: true } },
  ttl: { AccessToken: 300, IdToken: 300, RefreshToken: 3600, Session: 3600, Interaction: 600, Grant: 3600 },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === "/test/groups" && ctx.method === "POST") {
    const login = ctx.query.login;
    groups.set(login, String(ctx.query.groups || "").split(",").filter(Boolean));
    ctx.body = { login, groups: groups.get(login) };
    return;
  }
  await next();
});

provider.listen(port, "127.0.0.1", () => console.log(JSON.stringify({ issuer })));
