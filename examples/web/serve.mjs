// A static server for the example page: index.html and dist/ from this folder, nothing else.
// No dependencies. Usage: WEB_ORIGIN=http://127.0.0.1:5173 node examples/web/serve.mjs
// test.mjs imports startServer() instead of running this file.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL(".", import.meta.url)).replace(/[\\/]$/, "");

const contentTypes = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

// Maps a URL path to a file under root, or null: only "/", "/index.html" and "/dist/...",
// and never a path that resolves outside the folder ("..", encoded slashes, NUL).
export function fileFor(urlPath) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (path.includes("\0")) return null;
  if (path === "/") path = "/index.html";
  const file = resolve(join(root, path));
  if (!file.startsWith(root + sep)) return null;
  const relative = file.slice(root.length + 1).split(sep).join("/");
  if (relative !== "index.html" && !relative.startsWith("dist/")) return null;
  return file;
}

async function handle(request, response) {
  const send = (code, text) => {
    response.writeHead(code, { "content-type": "text/plain; charset=utf-8" });
    response.end(request.method === "HEAD" ? undefined : `${text}\n`);
  };
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.setHeader("allow", "GET, HEAD");
    return send(405, "method not allowed");
  }
  const urlPath = (request.url ?? "/").split("?")[0];
  if (!urlPath.startsWith("/")) return send(400, "bad request");
  const file = fileFor(urlPath);
  if (file === null) return send(404, "not found");
  const info = await stat(file).catch(() => null);
  if (!info?.isFile()) return send(404, "not found");
  response.writeHead(200, {
    "content-type": contentTypes[extname(file)] ?? "application/octet-stream",
    "content-length": info.size,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  if (request.method === "HEAD") return response.end();
  createReadStream(file).pipe(response);
}

// Starts serving on the origin's host and port; resolves to the http.Server once listening.
// For the origin WEB_ORIGIN with WEB_LISTEN_FD set (tools/with-system.sh), on that descriptor:
// a socket already listening on the origin's port, kept bound since before user-service
// started, so no other process can take the port meanwhile.
export function startServer(origin = process.env.WEB_ORIGIN || "http://127.0.0.1:5173") {
  const { hostname, port } = new URL(origin);
  const fd = process.env.WEB_LISTEN_FD;
  const inherited = fd && origin === process.env.WEB_ORIGIN;
  const where = inherited
    ? { fd: Number(fd) }
    : { port: Number(port || 80), host: hostname.replace(/^\[|\]$/g, "") };
  const server = createServer((request, response) => {
    handle(request, response).catch((err) => {
      console.error(`serve: ${request.url}: ${err}`);
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(where, () => {
      server.off("error", reject);
      resolvePromise(server);
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const origin = process.env.WEB_ORIGIN || "http://127.0.0.1:5173";
  const server = await startServer(origin);
  console.log(`serving ${root} on ${origin} (Ctrl-C stops)`);
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
