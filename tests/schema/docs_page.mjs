// Headless Chromium opens user-service's API reference page (GET /docs) and checks that it
// renders every operation of the served document (GET /openapi.json), with no console error
// and no request leaving the server: Swagger UI is embedded in the binary.
// Run against a running system: USER_SERVICE_URL=http://127.0.0.1:8080 node tests/schema/docs_page.mjs
// (`just test-schema` runs it against a private one).
import { chromium } from "playwright-core";

const apiUrl = (process.env.USER_SERVICE_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
const origin = new URL(apiUrl).origin;
const STEP_MS = 15_000; // every wait is bounded by this
const TOTAL_MS = 60_000; // and the whole check by this

const watchdog = setTimeout(() => {
  console.error(`docs page check FAILED: did not finish within ${TOTAL_MS} ms`);
  process.exit(1);
}, TOTAL_MS);

let browser;
let status = 0;
try {
  const response = await fetch(`${apiUrl}/openapi.json`, { signal: AbortSignal.timeout(STEP_MS) });
  if (response.status !== 200) throw new Error(`GET /openapi.json answered ${response.status}`);
  const document = await response.json();
  const want = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of Object.keys(item)) want.push(`${method.toUpperCase()} ${path}`);
  }
  want.sort();

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: STEP_MS,
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  const errors = [];
  const offsite = [];
  page.on("console", (msg) => { if (msg.type() === "error") errors.push(`console.error: ${msg.text()}`); });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  page.on("response", (res) => { if (res.status() >= 400) errors.push(`${res.status()} for ${res.url()}`); });
  page.on("request", (req) => {
    if (!req.url().startsWith("data:") && new URL(req.url()).origin !== origin) offsite.push(req.url());
  });

  await page.goto(`${apiUrl}/docs`, { waitUntil: "load" });
  // Swagger UI renders one .opblock per operation once it has loaded the document.
  await page.waitForFunction((n) => document.querySelectorAll(".opblock").length >= n, want.length);
  const shown = await page.$$eval(".opblock", (blocks) => blocks.map((block) => {
    const method = block.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "?";
    const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path") ??
      block.querySelector(".opblock-summary-path")?.textContent?.trim() ?? "?";
    return `${method.toUpperCase()} ${path.replace(/\u200b/g, "")}`;
  }));
  shown.sort();
  if (JSON.stringify(shown) !== JSON.stringify(want)) {
    throw new Error(`the page shows:\n  ${shown.join("\n  ")}\nthe document has:\n  ${want.join("\n  ")}`);
  }
  const title = await page.locator(".info .title").first().textContent();
  if (!title?.includes(document.info.title)) throw new Error(`the page's title is ${JSON.stringify(title)}`);
  if (errors.length > 0) throw new Error(`errors on the page:\n  ${errors.join("\n  ")}`);
  if (offsite.length > 0) throw new Error(`requests off ${origin}:\n  ${offsite.join("\n  ")}`);
  console.log(`docs page check: /docs renders all ${want.length} operations of /openapi.json (${apiUrl})`);
} catch (err) {
  status = 1;
  console.error(`docs page check FAILED: ${err.message}`);
} finally {
  await browser?.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(status);
