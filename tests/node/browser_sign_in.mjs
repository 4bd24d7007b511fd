// A person signing in at the edge, in a real browser (Debian's chromium, driven by
// playwright-core): open the authorization URL, paste the API key, allow on the consent
// page, and report where the browser was sent back to.
//
// As a module: `signIn(url, key, { follow, screenshot })`. As a program:
// `node browser_sign_in.mjs <authorization-url> <api-key> [--follow] [--screenshot FILE]`
// prints `{"redirect": "<url>"}`. Without --follow the final redirect is not loaded (the
// test reads the code from it); with --follow it is (a client's own callback server,
// like mcp-remote's, receives it). The edge's test CA is trusted through
// --ignore-certificate-errors only for the loopback edge the tests start.
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** Debian's chromium, headless, quiet (no background traffic), with `extra` flags. */
export function launchChromium(extra = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extra,
    ],
  });
}

export async function signIn(url, key, { follow = false, screenshot = null, idpLogin = null } = {}) {
  const browser = await launchChromium(["--ignore-certificate-errors"]);
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const edgeOrigin = new URL(url).origin;
    let redirect = null;
    // The team's identity provider, when the sign-in goes through it: not the client.
    const idpOrigin = process.env.MCP_IDP_ORIGIN || null;
    // Catch the navigation back to the client (any origin but the edge's): every
    // request of a redirect chain is reported, routed or not.
    const seenLeaving = (target) => {
      if (!redirect && !target.startsWith(edgeOrigin) && !(idpOrigin && target.startsWith(idpOrigin))) {
        redirect = target;
      }
    };
    page.on("request", (req) => { if (req.isNavigationRequest()) seenLeaving(req.url()); });
    page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) seenLeaving(frame.url()); });
    await page.route("**/*", async (route) => {
      const target = route.request().url();
      if (route.request().isNavigationRequest() && !target.startsWith(edgeOrigin)
          && !(idpOrigin && target.startsWith(idpOrigin))) {
        redirect = target;
        if (!follow) return route.abort();
      }
      return route.continue();
    });
    await page.goto(url);
    if (idpLogin) {
      // Through the team's identity provider: its login page, then its consent page
      // (oidc-provider's development pages), then back to the edge's consent page.
      await Promise.all([page.waitForURL((u) => !u.toString().startsWith(edgeOrigin)), page.click("#idp")]);
      await page.fill("input[name=login]", idpLogin);
      await page.fill("input[name=password]", "any password");
      await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
      for (let i = 0; i < 3 && !page.url().startsWith(edgeOrigin); i++) {
        const button = page.locator("button[type=submit]").first();
        if ((await button.count()) === 0) break;
        await Promise.all([page.waitForLoadState("load"), button.click()]);
      }
      redirect = null; // leaving the edge for the IdP is not the way back to the client
    } else {
      await page.fill("#api_key", key);
      await Promise.all([page.waitForLoadState("load"), page.click("#key")]);
    }
    if (!(await page.content()).includes("Allow access?")) {
      throw new Error("no consent page: " + (await page.textContent("main")));
    }
    if (screenshot) await page.screenshot({ path: screenshot });
    await page.click("button[value=approve]").catch(() => {});
    const deadline = Date.now() + 15000;
    while (!redirect && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!redirect) throw new Error("the browser was not sent back to the client");
    if (follow) await page.waitForLoadState("load").catch(() => {});
    return redirect;
  } finally {
    await browser.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [url, key, ...rest] = process.argv.slice(2);
  const follow = rest.includes("--follow");
  const i = rest.indexOf("--screenshot");
  const screenshot = i >= 0 ? rest[i + 1] : null;
  const redirect = await signIn(url, key, { follow, screenshot });
  console.log(JSON.stringify({ redirect }));
}
