// Browser test of the example page: headless Chromium signs up, fails to sign in with a wrong
// password, signs in, and sees the current user, all over cross-origin gRPC-Web.
// It builds nothing: run examples/run-web.sh, or build first and run against a running system:
//   USER_SERVICE_URL=http://127.0.0.1:8080 WEB_ORIGIN=http://127.0.0.1:5173 node examples/web/test.mjs
// WEB_ORIGIN must be an origin user-service allows by CORS (USER_CORS_ALLOWED_ORIGINS).
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { startServer } from "./serve.mjs";

const apiUrl = (process.env.USER_SERVICE_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
const webOrigin = new URL(process.env.WEB_ORIGIN || "http://127.0.0.1:5173").origin;
const apiOrigin = new URL(apiUrl).origin;
const STEP_MS = 10_000; // every wait is bounded by this
const TOTAL_MS = 90_000; // and the whole test by this

const run = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
const email = `web-test-${run}@example.com`;
const password = `correct horse ${run}`;
const displayName = `Web Test ${run}`;

let server;
let browser;
let page;
const consoleErrors = [];
const apiRequests = []; // { method, path, headers, response: { status, headers } | null, failure }
let passed = 0;

function check(condition, message) {
  if (!condition) throw new Error(message);
  passed++;
}

async function textOf(testid) {
  return (await page.getByTestId(testid).textContent({ timeout: STEP_MS })) ?? "";
}

// Waits until the element's text contains `expected`; on timeout, says what it showed instead.
async function waitForText(testid, expected) {
  try {
    await page.waitForFunction(
      ([id, text]) => document.querySelector(`[data-testid="${id}"]`)?.textContent?.includes(text),
      [testid, expected],
      { timeout: STEP_MS },
    );
  } catch (err) {
    const shown = `status=${JSON.stringify(await textOf("status").catch(() => "?"))} ` +
      `error=${JSON.stringify(await textOf("error").catch(() => "?"))}`;
    throw new Error(`[data-testid=${testid}] did not show ${JSON.stringify(expected)} within ` +
      `${STEP_MS} ms (${shown}): ${err.message.split("\n")[0]}`);
  }
  passed++;
}

function checkNoConsoleErrors(step) {
  check(consoleErrors.length === 0, `console errors after ${step}:\n  ${consoleErrors.join("\n  ")}`);
}

// The static server must not serve files outside examples/web (raw path: fetch would normalize it).
function rawGet(path) {
  const { hostname, port } = new URL(webOrigin);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, timeout: STEP_MS }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

async function main() {
  check(webOrigin !== apiOrigin, `WEB_ORIGIN and USER_SERVICE_URL must differ (both ${apiOrigin})`);
  server = await startServer(webOrigin);
  for (const path of ["/..%2fpackage.json", "/dist/..%2f..%2f..%2fpackage.json", "/serve.mjs"]) {
    const status = await rawGet(path);
    check(status === 404, `the static server answered ${status} for ${path}, want 404`);
  }

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: STEP_MS,
  });
  page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(`console.error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => consoleErrors.push(`uncaught: ${err.message}`));
  page.on("request", (req) => {
    const url = new URL(req.url());
    if (url.origin !== apiOrigin) return;
    const entry = { method: req.method(), path: url.pathname, headers: null, response: null, failure: null };
    apiRequests.push(entry);
    // allHeaders() has what went on the wire, including Origin; resolve before the checks.
    entry.pending = req.allHeaders().then((h) => { entry.headers = h; });
  });
  page.on("response", (res) => {
    const entry = apiRequests.find((e) => e.response === null && res.request().url() === new URL(e.path, apiOrigin).href);
    if (entry) entry.response = { status: res.status(), headers: res.headers() };
  });
  page.on("requestfailed", (req) => {
    const entry = apiRequests.find((e) => req.url() === new URL(e.path, apiOrigin).href && !e.failure);
    if (entry) entry.failure = req.failure()?.errorText ?? "failed";
  });

  // 1. The page loads and reads the API URL from ?api=.
  await page.goto(`${webOrigin}/?api=${encodeURIComponent(apiUrl)}`, { waitUntil: "load" });
  await waitForText("api", apiUrl);
  checkNoConsoleErrors("loading the page");

  // 2. Sign up.
  await page.getByTestId("signup-email").fill(email);
  await page.getByTestId("signup-password").fill(password);
  await page.getByTestId("signup-display-name").fill(displayName);
  await page.getByTestId("signup-submit").click();
  await waitForText("status", `Signed up as ${email}`);
  const signedUpId = /\(id ([^)]+)\)/.exec(await textOf("status"))?.[1] ?? "";
  check(signedUpId !== "", `the sign-up status shows no user id: ${await textOf("status")}`);
  checkNoConsoleErrors("sign-up");

  // 3. A wrong password is UNAUTHENTICATED, shown by name, and shows no user.
  await page.getByTestId("signin-email").fill(email);
  await page.getByTestId("signin-password").fill(`wrong ${password}`);
  await page.getByTestId("signin-submit").click();
  await waitForText("error", "Unauthenticated: ");
  check(await page.getByTestId("user").isHidden(), "the user is shown after a failed sign-in");
  checkNoConsoleErrors("the wrong-password sign-in");

  // 4. The right password signs in and shows the current user.
  await page.getByTestId("signin-password").fill(password);
  await page.getByTestId("signin-submit").click();
  await waitForText("user-email", email);
  check(await page.getByTestId("user").isVisible(), "the user section is hidden after sign-in");
  check(await textOf("user-display-name") === displayName,
    `display name is ${JSON.stringify(await textOf("user-display-name"))}, want ${JSON.stringify(displayName)}`);
  check(await textOf("user-email") === email, `email is ${JSON.stringify(await textOf("user-email"))}, want ${email}`);
  check(await textOf("user-id") === signedUpId,
    `id is ${JSON.stringify(await textOf("user-id"))}, want the signed-up id ${signedUpId}`);
  const roles = (await textOf("user-roles")).split(",").map((r) => r.trim());
  check(roles.includes("user"), `roles are ${JSON.stringify(roles)}, want them to include "user"`);
  check(await textOf("error") === "", `the error still shows after sign-in: ${await textOf("error")}`);
  checkNoConsoleErrors("sign-in");

  // 5. The calls were cross-origin gRPC-Web requests from the page's origin, allowed by CORS.
  await Promise.all(apiRequests.map((e) => e.pending));
  const calls = apiRequests.map((e) => `${e.method} ${e.path}`);
  const want = [
    "POST /grimos.user.v1.UserService/CreateUser",
    "POST /grimos.auth.v1.AuthService/Login",
    "POST /grimos.auth.v1.AuthService/Login",
    "POST /grimos.user.v1.UserService/GetCurrentUser",
  ];
  check(JSON.stringify(calls) === JSON.stringify(want),
    `requests to ${apiOrigin}:\n  ${calls.join("\n  ")}\nwant:\n  ${want.join("\n  ")}`);
  for (const e of apiRequests) {
    const call = `${e.method} ${e.path}`;
    check(e.failure === null, `${call} failed in the browser: ${e.failure}`);
    check(e.headers["content-type"] === "application/grpc-web+proto",
      `${call} has content-type ${e.headers["content-type"]}, want application/grpc-web+proto`);
    check(e.headers["origin"] === webOrigin, `${call} has origin ${e.headers["origin"]}, want ${webOrigin}`);
    check(e.response?.status === 200, `${call} answered HTTP ${e.response?.status}, want 200`);
    check(e.response.headers["access-control-allow-origin"] === webOrigin,
      `${call} answered access-control-allow-origin ${e.response.headers["access-control-allow-origin"]}, want ${webOrigin}`);
    check(e.response.headers["content-type"]?.startsWith("application/grpc-web"),
      `${call} answered content-type ${e.response.headers["content-type"]}, want application/grpc-web*`);
  }
  const current = apiRequests.at(-1);
  check(/^Bearer \S+$/.test(current.headers["authorization"] ?? ""),
    "GetCurrentUser was sent without an Authorization: Bearer header");
  const failedLogin = apiRequests[1].response.headers;
  check(failedLogin["grpc-status"] === "16",
    `the wrong-password Login answered grpc-status ${failedLogin["grpc-status"]} in its headers, want 16`);
  checkNoConsoleErrors("the test");
}

async function fail(err) {
  console.error(`web example test FAILED: ${err.message}`);
  if (page) {
    const shot = join(tmpdir(), `grimos-web-test-${run}.png`);
    try {
      await page.screenshot({ path: shot, fullPage: true, timeout: STEP_MS });
      console.error(`screenshot: ${shot}`);
    } catch (shotErr) {
      console.error(`no screenshot: ${shotErr.message}`);
    }
  }
  if (apiRequests.length > 0) {
    console.error(`requests to ${apiOrigin}:`);
    for (const e of apiRequests) {
      console.error(`  ${e.method} ${e.path} -> ${e.failure ?? e.response?.status ?? "no response"} ` +
        `${JSON.stringify(e.response?.headers ?? {})}`);
    }
  }
  if (consoleErrors.length > 0) console.error(`console errors:\n  ${consoleErrors.join("\n  ")}`);
}

async function close() {
  await browser?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

const watchdog = setTimeout(() => {
  console.error(`web example test FAILED: did not finish within ${TOTAL_MS} ms`);
  process.exit(1);
}, TOTAL_MS);

let status = 0;
try {
  await main();
  console.log(`web example test: ${passed} checks passed (${email} against ${apiUrl} from ${webOrigin})`);
} catch (err) {
  status = 1;
  await fail(err);
} finally {
  await close();
  clearTimeout(watchdog);
}
process.exit(status);
