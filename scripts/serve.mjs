#!/usr/bin/env node
// A small static server for the demo page and the browser tests, on 127.0.0.1 only.
// Serves www/, pkg/ and models/ of the repository (and tests/ with --test-hooks), with Range
// requests (206 + Content-Range), HEAD, and the right MIME types for .js/.wasm.
//
//   node scripts/serve.mjs [--port 8080] [--test-hooks]
//
// --port 0 picks a free port; the first line printed is `serving http://127.0.0.1:PORT/`.
// --test-hooks adds query parameters the browser tests use to imitate other servers:
//   ?norange       ignore Range headers (always 200 with the whole body, no Accept-Ranges)
//   ?slice=A-B     serve bytes [A, B) of the file as if they were the whole file
//   ?truncate=N    serve only the first N bytes of the file, as if it were that short
//   ?cut=N         announce the full length but close the connection after byte N
//   ?slow=MS       wait MS milliseconds before answering
//   ?patch=OFF:HEX replace the bytes at offset OFF (of the served resource) by HEX
//   ?noexpose      no Access-Control-Expose-Headers (cross-origin pages cannot see Content-Range)
// and GET /__log (JSON list of the requests served: path, range, status, bytes, t0 and t1 in ms),
// POST /__log (clears it), and --mount /PREFIX/=DIR (serve DIR under /PREFIX/, e.g. files a
// test wrote). Every answer then carries `Cache-Control: no-store` (Chromium's HTTP cache keeps
// Range responses: the tests of the model cache must not be passed by the browser's cache).
//
// POST /__fault?... sets server-wide faults on model files (under /models/ and the mounts; they
// replace the previous ones; POST /__fault alone clears them). A fault never hits a 1-byte
// probe (`Range: bytes=0-0`) unless said otherwise:
//   cut=N          after N body bytes in total, cut the connection; later requests are cut at once
//   status=S       answer S (e.g. 503, 404) with a text body ...
//   html=1         ... or answer 200 with an HTML page (a login or error page) ...
//   badrange=1     ... or answer 206 with a Content-Range whose total disagrees with the file ...
//   count=K        ... for the next K requests (default 1)
//   etag=X         append X to every ETag (the file "changed" on the server)
//   down=1         cut every model request, probes included (the model server is down)
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(option("--port", process.env.PORT || 8080));
const testHooks = args.includes("--test-hooks");
const served = testHooks ? ["www", "pkg", "models", "tests"] : ["www", "pkg", "models"];
const mounts = testHooks
  ? args.flatMap((a, i) => (a === "--mount" ? [args[i + 1].split("=")] : [])).map(([prefix, dir]) => [prefix, path.resolve(dir)])
  : [];

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".ts": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

const log = [];
/** The faults POST /__fault set (see the header). */
let faults = {};

/** Whether `urlPath` is a model file (where faults apply). */
function isModelPath(urlPath) {
  return urlPath.startsWith("/models/") || mounts.some(([prefix]) => urlPath.startsWith(prefix));
}

/** The file under `root` that `urlPath` names, or null (outside the served folders). */
function resolveFile(urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  const normalized = path.posix.normalize(decoded);
  for (const [prefix, dir] of mounts) {
    if (normalized.startsWith(prefix)) {
      const file = path.resolve(dir, "." + normalized.slice(prefix.length - 1));
      const rel = path.relative(dir, file);
      return rel.startsWith("..") || path.isAbsolute(rel) ? null : file;
    }
  }
  const file = path.resolve(root, "." + normalized);
  const rel = path.relative(root, file);
  if (rel.startsWith("..") || path.isAbsolute(rel)) return null;
  const top = rel.split(path.sep)[0];
  return served.includes(top) ? file : null;
}

/** [start, end) of a `Range: bytes=...` header for a body of `size` bytes; null = not
 * satisfiable; undefined = no (or an unsupported multi-) range. */
function parseRange(header, size) {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  let start, end;
  if (m[1] === "") {
    const n = Number(m[2]);
    start = Math.max(0, size - n);
    end = size;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size : Math.min(size, Number(m[2]) + 1);
  }
  if (start >= size || start >= end) return null;
  return [start, end];
}

async function handle(req, res) {
  const url = new URL(req.url, "http://127.0.0.1");
  const q = testHooks ? url.searchParams : new URLSearchParams();
  if (testHooks && url.pathname === "/__log") {
    if (req.method === "POST") log.length = 0;
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
    res.end(JSON.stringify(log));
    return;
  }
  if (testHooks && url.pathname === "/__fault" && req.method === "POST") {
    const p = url.searchParams;
    const num = (k) => (p.has(k) ? Number(p.get(k)) : undefined);
    faults = {
      cut: num("cut"), status: num("status"), html: p.has("html"), badrange: p.has("badrange"), count: num("count") ?? 1,
      etag: p.get("etag") || "", down: p.has("down"),
    };
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
    res.end(JSON.stringify(faults));
    return;
  }
  if (url.pathname === "/" || url.pathname === "/www") {
    res.writeHead(302, { Location: "/www/" + url.search });
    res.end();
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" });
    res.end();
    return;
  }
  let file = resolveFile(url.pathname);
  let stat = null;
  if (file) {
    try {
      stat = await fs.promises.stat(file);
      if (stat.isDirectory()) {
        file = path.join(file, "index.html");
        stat = await fs.promises.stat(file);
      }
    } catch {
      stat = null;
    }
  }
  const entry = { method: req.method, path: url.pathname + url.search, range: req.headers.range || null, t0: Date.now() };
  if (testHooks) log.push(entry);
  res.on("close", () => { entry.t1 = Date.now(); });
  const faulty = testHooks && isModelPath(url.pathname) && stat && stat.isFile();
  const probe = req.headers.range === "bytes=0-0";
  if (faulty && (faults.down || (!probe && faults.cut !== undefined && faults.cut <= 0))) {
    entry.status = "cut";
    res.destroy();
    return;
  }
  const badRange = faulty && !probe && faults.badrange && faults.count > 0;
  if (badRange) faults.count -= 1;
  if (faulty && !probe && (faults.status || faults.html) && faults.count > 0) {
    faults.count -= 1;
    entry.status = faults.html ? 200 : faults.status;
    entry.fault = faults.html ? "html" : `status ${faults.status}`;
    const html = "<!doctype html><title>Sign in</title><p>Please sign in to continue.</p>\n";
    res.writeHead(entry.status, { "Content-Type": faults.html ? "text/html; charset=utf-8" : "text/plain; charset=utf-8", "Cache-Control": "no-store", "Access-Control-Allow-Origin": "*" });
    res.end(faults.html ? html : `fault: HTTP ${faults.status}\n`);
    return;
  }
  if (!stat || !stat.isFile()) {
    entry.status = 404;
    res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
    res.end(`not found: ${url.pathname}\n`);
    return;
  }
  if (q.has("slow")) await new Promise((r) => setTimeout(r, Number(q.get("slow"))));

  // The bytes [base, base + size) of the file stand for the whole resource.
  let base = 0;
  let size = stat.size;
  if (q.has("slice")) {
    const [a, b] = q.get("slice").split("-").map(Number);
    base = Math.min(a, stat.size);
    size = Math.max(0, Math.min(b, stat.size) - base);
  }
  if (q.has("truncate")) size = Math.min(size, Number(q.get("truncate")));
  const cut = q.has("cut") ? Number(q.get("cut")) : Infinity;
  const ranges = !q.has("norange");

  const headers = {
    "Content-Type": TYPES[path.extname(file)] || "application/octet-stream",
    "Cache-Control": testHooks ? "no-store" : "no-cache",
    "Access-Control-Allow-Origin": "*",
    ETag: `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}${faulty ? faults.etag : ""}"`,
    "Last-Modified": stat.mtime.toUTCString(),
  };
  if (!q.has("noexpose")) headers["Access-Control-Expose-Headers"] = "Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified";
  if (ranges) headers["Accept-Ranges"] = "bytes";
  let start = 0;
  let end = size;
  let status = 200;
  const range = ranges ? parseRange(req.headers.range, size) : undefined;
  if (range === null) {
    entry.status = 416;
    res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` });
    res.end();
    return;
  }
  if (range) {
    [start, end] = range;
    status = 206;
    headers["Content-Range"] = `bytes ${start}-${end - 1}/${badRange ? size + 4096 : size}`;
    if (badRange) entry.fault = "badrange";
  }
  headers["Content-Length"] = String(end - start);
  entry.status = status;
  entry.bytes = 0;
  res.writeHead(status, headers);
  if (req.method === "HEAD" || end === start) {
    res.end();
    return;
  }
  let last = Math.min(end, cut);
  if (faulty && !probe && faults.cut !== undefined) {
    // The fault's byte budget: this answer ends where it runs out.
    last = Math.min(last, start + faults.cut);
    faults.cut -= last - start;
    if (last < end) entry.fault = "cut";
  }
  if (last <= start) {
    res.destroy();
    return;
  }
  const stream = fs.createReadStream(file, { start: base + start, end: base + last - 1 });
  const patch = q.has("patch") ? q.get("patch").split(":") : null;
  const patchAt = patch ? Number(patch[0]) : 0;
  const patchBytes = patch ? Buffer.from(patch[1], "hex") : null;
  let at = start; // resource offset of the next chunk
  stream.on("data", (chunk) => {
    if (patchBytes) {
      for (let i = 0; i < patchBytes.length; i++) {
        const j = patchAt + i - at;
        if (j >= 0 && j < chunk.length) chunk[j] = patchBytes[i];
      }
    }
    at += chunk.length;
    entry.bytes += chunk.length;
  });
  stream.on("error", () => res.destroy());
  stream.on("end", () => { if (last < end) res.destroy(); });
  // A client that stops reading (a cancelled fetch) closes the socket: stop reading the file.
  res.on("close", () => stream.destroy());
  stream.pipe(res, { end: last >= end });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
    res.end(String(e));
  });
});
server.listen(port, "127.0.0.1", () => {
  console.log(`serving http://127.0.0.1:${server.address().port}/`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
