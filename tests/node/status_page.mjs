// The operators' status page in a real browser (Debian's chromium, driven by
// playwright-core): open it with its token (HTTP Basic, as a person's browser would be
// asked), wait until its script has polled status.json and redrawn the tables, check
// that nothing broke the Content-Security-Policy and that no markup a client chose was
// parsed (no <img>), take a screenshot, and print every table's cells as JSON:
// `{"tables": {"<section id>": [[cell, ...], ...]}, "summary": "...", "polls": n}`.
//
// `node status_page.mjs <page-url> <token> <screenshot-file>`
import { launchChromium } from "./browser_sign_in.mjs";

const [url, token, screenshot] = process.argv.slice(2);

const browser = await launchChromium();
try {
  const context = await browser.newContext({
    httpCredentials: { username: "ops", password: token },
    viewport: { width: 1200, height: 900 },
  });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  let polls = 0;
  page.on("response", (r) => { if (r.url().includes("status.json") && r.status() === 200) polls++; });
  const response = await page.goto(url);
  if (response.status() !== 200) throw new Error(`the page answered ${response.status()}`);
  // Two polls: the script runs, and the tables were redrawn from status.json.
  await page.waitForResponse((r) => r.url().includes("status.json?view=page") && r.status() === 200, { timeout: 10000 });
  await page.waitForResponse((r) => r.url().includes("status.json?view=page") && r.status() === 200, { timeout: 10000 });
  await page.waitForTimeout(200);
  if (await page.evaluate(() => document.body.classList.contains("stale"))) {
    throw new Error("the page says it is not updating");
  }
  const tables = await page.evaluate(() => {
    const out = {};
    for (const s of document.querySelectorAll("section")) {
      out[s.id] = [...s.querySelectorAll("tbody tr")].map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent));
    }
    return out;
  });
  const images = await page.evaluate(() => document.querySelectorAll("img, iframe, object, embed").length);
  const external = await page.evaluate(() => [...document.querySelectorAll("[src], link[href]")].length);
  const chartPath = await page.getAttribute("#chart-calls", "d");
  const summary = await page.textContent("#summary");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ tables, summary, polls, images, external, chartPath, problems }));
} finally {
  await browser.close();
}
