// The model cache in real Chromium, against the test server with its fault hooks (serve.mjs:
// `Cache-Control: no-store`, so that Chromium's own HTTP cache cannot pass these tests): loads
// from the cache with no weight request, resume after a cut connection, offline loads with the
// server stopped, corrupted and truncated entries, retries, errors that are never cached, sha256
// checks, quota failures, parallel Range requests, and the `cache` API. Both storage backends:
// OPFS (the engine's worker, the default) and the Cache API (the page's thread).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, openHarness, root, SMOLLM2, SMOLLM2_BYTES, fixture } from "./helpers.mjs";
import { splitGguf } from "./gguf-split.mjs";

const MiB = 1 << 20;
const CHUNK = 8 * MiB;
const FIRST = fixture.generate[0];
const N = 2; // tokens generated per load (SwiftShader is slow)
const SHA256 = crypto.createHash("sha256").update(fs.readFileSync(path.join(root, SMOLLM2))).digest("hex");

let server, browser, tmp, shards;
before(async () => {
  // gguf-split-style shards of SmolLM2, served under /__tmp/.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-cache-shards-"));
  shards = splitGguf(path.join(root, SMOLLM2), tmp, 3).map((f) => `/__tmp/${path.basename(f)}`);
  server = await startServer(["--test-hooks", "--mount", `/__tmp/=${tmp}`]);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  server?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh profile's storage (a new browser context) with the harness page open in it. */
async function freshPage() {
  const context = await browser.newContext();
  const page = await openHarness(context, server.url);
  page.reopen = () => openHarness(context, server.url);
  return page;
}

/** In the page: loads the model with `options`, generates N greedy tokens; the progress reports,
 * the tokens, memory() and the load time, or the error. */
async function load(page, options = {}, { url = SMOLLM2, patch = "" } = {}) {
  return page.evaluate(async ({ url, options, prompt, n, patch }) => {
    const { load } = window.ferrolm;
    if (patch) (0, eval)(patch);
    const reports = [];
    const t0 = performance.now();
    try {
      const engine = await load(url, { ...options, onProgress: (p) => reports.push(p) });
      const loadMs = performance.now() - t0;
      const tokens = [];
      for await (const piece of engine.generate(prompt, { maxTokens: n, temperature: 0, ignoreEos: true })) tokens.push(piece.token);
      const memory = await engine.memory();
      await engine.dispose();
      return { ok: true, loadMs, tokens, memory, last: reports.at(-1), statuses: [...new Set(reports.map((r) => r.cache))] };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, typed: e instanceof window.ferrolm.FerrolmError, last: reports.at(-1) };
    }
  }, { url, options, prompt: FIRST.prompt, n: N, patch });
}

const list = (page) => page.evaluate(() => window.ferrolm.cache.list());
const has = (page, url = SMOLLM2) => page.evaluate((u) => window.ferrolm.cache.has(u), url);

/** The GETs of the model file the server saw (the 1-byte probes apart, unless `probes`). */
async function modelGets({ probes = false } = {}) {
  return (await server.log()).filter((e) => e.path === SMOLLM2 && e.method === "GET" && (probes || e.range !== "bytes=0-0"));
}

/** [start, end) of a logged `Range: bytes=a-b`. */
function rangeOf(entry) {
  const [a, b] = /bytes=(\d+)-(\d+)/.exec(entry.range).slice(1).map(Number);
  return [a, b + 1];
}

function assertFixture(r) {
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N), "the fixture's tokens");
}

for (const [backend, worker] of [["OPFS (worker)", true], ["Cache API (page thread)", false]]) {
  test(`${backend}: the first load fills the cache with parallel Range requests; the second makes no weight request`, async () => {
    const page = await freshPage();
    await server.clearLog();
    const first = await load(page, { worker });
    assertFixture(first);
    assert.equal(first.last.cache, "writing");
    assert.equal(first.last.fromNetwork, SMOLLM2_BYTES, "every byte came from the network once");
    assert.equal(first.last.fromCache, 0);
    assert.ok(first.memory.peakWasmHeapBytes < 64 * MiB, `peak wasm heap ${first.memory.peakWasmHeapBytes} < 64 MiB`);
    const gets = await modelGets();
    assert.ok(gets.every((e) => e.status === 206 && e.bytes <= CHUNK), "8 MiB Range requests");
    assert.equal(gets.reduce((s, e) => s + e.bytes, 0), SMOLLM2_BYTES, "one pass over the file");
    // Parallel: requests overlap in time (4 in flight by default).
    const overlap = Math.max(...gets.map((a) => gets.filter((b) => b.t0 < a.t1 && a.t0 < b.t1).length));
    assert.ok(overlap >= 3, `at most ${overlap} requests overlapped`);
    const [entry] = await list(page);
    assert.equal(entry.url, server.url + SMOLLM2);
    assert.equal(entry.bytes, SMOLLM2_BYTES);
    assert.equal(entry.storedBytes, SMOLLM2_BYTES);
    assert.equal(entry.complete, true);
    assert.equal(entry.sha256, SHA256, "the whole-file sha256, computed in file order while streaming");
    assert.equal(entry.storage, worker ? "opfs" : "cache-api");
    assert.equal(await has(page), true);

    // A second visit: from the cache, one revalidation probe and no weight request.
    const page2 = await page.reopen();
    await server.clearLog();
    const second = await load(page2, { worker });
    assertFixture(second);
    assert.deepEqual(second.statuses.filter(Boolean), ["hit"]);
    assert.equal(second.last.fromCache, SMOLLM2_BYTES);
    assert.equal(second.last.fromNetwork, 0);
    assert.ok(second.memory.peakWasmHeapBytes < 64 * MiB, `peak wasm heap ${second.memory.peakWasmHeapBytes} < 64 MiB`);
    const log = (await server.log()).filter((e) => e.path === SMOLLM2);
    assert.deepEqual(log.map((e) => e.range), ["bytes=0-0"], "only one 1-byte revalidation request");
    // The same load without the cache, for comparison (the README's figures).
    const uncached = await load(page2, { worker, cache: false });
    assertFixture(uncached);
    assert.equal(uncached.last.cache, "skipped: disabled (cache: false)");
    console.log(`# ${backend}: first load ${(first.loadMs / 1000).toFixed(1)} s, cached load ${(second.loadMs / 1000).toFixed(1)} s, ` +
      `uncached load ${(uncached.loadMs / 1000).toFixed(1)} s (${SMOLLM2_BYTES} bytes)`);
    await page.context().close();
  });
}

test("a connection cut after ~40 MB: the next load fetches only the missing chunks", async () => {
  const page = await freshPage();
  await server.fault("cut=40000000");
  const cut = await load(page, { retries: 1 });
  await server.fault();
  assert.equal(cut.ok, false, "the first load fails once the server cuts every connection");
  assert.equal(cut.name, "NetworkError", cut.message);
  const [partial] = await list(page);
  assert.equal(partial.complete, false);
  assert.ok(partial.storedBytes >= 3 * CHUNK && partial.storedBytes <= 40e6, `chunks kept: ${partial.storedBytes} bytes`);
  assert.equal(await has(page), false, "an incomplete entry is not `has`");

  await server.clearLog();
  const resumed = await load(await page.reopen());
  assertFixture(resumed);
  assert.equal(resumed.last.fromCache, partial.storedBytes, "the kept chunks came from the cache");
  assert.equal(resumed.last.fromNetwork, SMOLLM2_BYTES - partial.storedBytes, "only the rest came from the network");
  const gets = await modelGets();
  assert.equal(gets.reduce((s, e) => s + e.bytes, 0), SMOLLM2_BYTES - partial.storedBytes, "request log: only the missing bytes");
  assert.ok(gets.every((e) => rangeOf(e)[0] >= partial.storedBytes), "no request for a kept chunk");
  const [entry] = await list(page);
  assert.equal(entry.complete, true);
  assert.equal(entry.sha256, SHA256, "the resumed file hashes to the original");
  console.log(`# resumed load (${SMOLLM2_BYTES - partial.storedBytes} of ${SMOLLM2_BYTES} bytes fetched): ${(resumed.loadMs / 1000).toFixed(1)} s`);
  await page.context().close();
});

test("an aborted load and a tab closed mid-download keep their chunks; the next load resumes", async () => {
  const page = await freshPage();
  // Abort once 3 chunks came from the network (engine in the worker: OPFS).
  const aborted = await page.evaluate(async (url) => {
    const controller = new AbortController();
    try {
      await window.ferrolm.load(url, {
        signal: controller.signal,
        onProgress: (p) => { if (p.fromNetwork >= 3 * 8 * 2 ** 20) controller.abort(); },
      });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name };
    }
  }, SMOLLM2);
  assert.deepEqual(aborted, { ok: false, name: "AbortError" });
  const [partial] = await list(page);
  assert.equal(partial.complete, false);
  assert.ok(partial.storedBytes >= 3 * CHUNK, `kept ${partial.storedBytes} bytes`);

  // A tab closed while its worker downloads: what it stored stays usable.
  const tab = await page.reopen();
  await tab.evaluate((url) => {
    window.ferrolm.load(url, { onProgress: (p) => { window.lastProgress = p; } }).catch(() => {});
  }, SMOLLM2);
  await tab.waitForFunction((n) => window.lastProgress && window.lastProgress.fromNetwork >= n, 2 * CHUNK, { timeout: 60_000 });
  await tab.close();
  await new Promise((r) => setTimeout(r, 500)); // the worker's OPFS handles are released
  const [kept] = await list(page);
  assert.ok(kept.storedBytes >= partial.storedBytes + 2 * CHUNK, `after the closed tab: ${kept.storedBytes} bytes`);

  await server.clearLog();
  const resumed = await load(await page.reopen());
  assertFixture(resumed);
  assert.equal(resumed.last.fromCache, kept.storedBytes);
  assert.equal(resumed.last.fromNetwork, SMOLLM2_BYTES - kept.storedBytes);
  assert.equal((await modelGets()).reduce((s, e) => s + e.bytes, 0), SMOLLM2_BYTES - kept.storedBytes);
  await page.context().close();
});

test("persist: true asks the browser to keep the storage", async () => {
  const page = await freshPage();
  const r = await page.evaluate(async () => {
    let asked = 0;
    navigator.storage.persist = async () => { asked++; return true; };
    await window.ferrolm.load("/models/none.gguf", { persist: true, worker: false }).catch(() => {});
    await window.ferrolm.load("/models/none.gguf", { worker: false }).catch(() => {});
    return asked;
  });
  assert.equal(r, 1);
  await page.context().close();
});

test("with the server stopped, offline: true and a plain load both work from a complete cache; offline never requests", async () => {
  const page = await freshPage();
  assertFixture(await load(page, { worker: false }));
  // Offline, a model that is not cached: a clear error and no request.
  await server.clearLog();
  const missing = await load(page, { worker: false, offline: true }, { url: "/models/gemma-3-270m-q4_k_m.gguf.part00" });
  assert.equal(missing.ok, false);
  assert.equal(missing.name, "NetworkError");
  assert.match(missing.message, /offline: cannot load .* not completely in the cache/);
  assert.deepEqual(await server.log(), [], "offline: no request at all");

  await server.stop();
  try {
    const offline = await load(page, { worker: false, offline: true });
    assertFixture(offline);
    assert.equal(offline.last.fromCache, SMOLLM2_BYTES);
    const plain = await load(page, { worker: false });
    assertFixture(plain);
    assert.equal(plain.last.cache, "hit", "the failed revalidation falls back to the complete cache");
  } finally {
    await server.start();
  }
  // The worker (OPFS) with the model server down: the worker's scripts load, the model does not.
  const page2 = await freshPage();
  assertFixture(await load(page2));
  await server.fault("down=1");
  await server.clearLog();
  try {
    assertFixture(await load(page2, { offline: true }));
    assert.deepEqual((await server.log()).filter((e) => e.path === SMOLLM2), [], "offline: no model request");
    assertFixture(await load(page2));
  } finally {
    await server.fault();
  }
  await page.context().close();
  await page2.context().close();
});

test("a corrupted or truncated cache entry is detected and fetched again (Cache API and OPFS)", async () => {
  // Cache API (page thread): overwrite chunk 3 with other bytes from the page.
  const page = await freshPage();
  assertFixture(await load(page, { worker: false }));
  await page.evaluate(async () => {
    const c = await caches.open("ferrolm-models-v1");
    const key = (await c.keys()).map((r) => r.url).find((u) => u.endsWith("/chunk-3"));
    const bytes = new Uint8Array(await (await c.match(key)).arrayBuffer());
    bytes[12345] ^= 0xff;
    await c.put(key, new Response(bytes));
  });
  await server.clearLog();
  const repaired = await load(page, { worker: false });
  assertFixture(repaired);
  assert.equal(repaired.last.fromNetwork, CHUNK, "one chunk fetched again");
  assert.deepEqual((await modelGets()).map(rangeOf), [[3 * CHUNK, 4 * CHUNK]]);
  const again = await load(page, { worker: false });
  assert.equal(again.last.fromNetwork, 0, "the repaired entry is whole again");

  // OPFS (worker): flip a byte of chunk 5 and cut the file short inside chunk 9.
  const page2 = await freshPage();
  assertFixture(await load(page2));
  await page2.evaluate(async ({ at, cut }) => {
    const root = await navigator.storage.getDirectory();
    const folder = await root.getDirectoryHandle("ferrolm-cache");
    for await (const [, dir] of folder.entries()) {
      const handle = await dir.getFileHandle("data");
      const w = await handle.createWritable({ keepExistingData: true });
      await w.write({ type: "write", position: at, data: new Uint8Array([1, 2, 3, 4]) });
      await w.truncate(cut);
      await w.close();
    }
  }, { at: 5 * CHUNK + 777, cut: 9 * CHUNK + 100 });
  await server.clearLog();
  const repaired2 = await load(page2);
  assertFixture(repaired2);
  const refetched = (await modelGets()).map(rangeOf).map(([a]) => a / CHUNK).sort((a, b) => a - b);
  const expected = [5, ...Array.from({ length: Math.ceil(SMOLLM2_BYTES / CHUNK) - 9 }, (_, i) => 9 + i)];
  assert.deepEqual(refetched, expected, "the flipped chunk and every chunk past the cut");
  assert.equal((await list(page2))[0].complete, true);
  await page.context().close();
  await page2.context().close();
});

test("503s are retried; a 404, an HTML page or a wrong Content-Range for a range is an error and is never cached", async () => {
  const page = await freshPage();
  await server.fault("status=503&count=2");
  await server.clearLog();
  const retried = await load(page, { worker: false });
  await server.fault();
  assertFixture(retried);
  const gets = await modelGets();
  assert.equal(gets.filter((e) => e.status === 503).length, 2, "two 503 answers");
  assert.equal(gets.filter((e) => e.status === 206).reduce((s, e) => s + e.bytes, 0), SMOLLM2_BYTES, "then every byte");
  assert.equal((await list(page))[0].complete, true);

  for (const [fault, what] of [["status=404", /HTTP 404/], ["html=1", /HTML page/], ["badrange=1", /disagrees with the file's size/]]) {
    const p = await freshPage();
    await server.fault(fault);
    const r = await load(p, { worker: false });
    await server.fault();
    assert.equal(r.ok, false, `${fault}: the load fails`);
    assert.equal(r.name, "NetworkError");
    assert.match(r.message, what);
    const entries = await list(p);
    assert.ok(entries.every((e) => e.storedBytes === 0), `${fault}: nothing was cached (${JSON.stringify(entries)})`);
    const cached = await p.evaluate(async () => {
      const c = await caches.open("ferrolm-models-v1");
      return (await c.keys()).map((r) => r.url).filter((u) => u.includes("/chunk-"));
    });
    assert.deepEqual(cached, [], `${fault}: no chunk in the Cache API`);
    await p.context().close();
  }
  await page.context().close();
});

test("sha256: a mismatch throws IntegrityError and removes the entry; a match is verified", async () => {
  const page = await freshPage();
  const wrong = "0".repeat(64);
  const bad = await load(page, { sha256: wrong });
  assert.equal(bad.ok, false);
  assert.equal(bad.name, "IntegrityError", bad.message);
  assert.ok(bad.typed);
  assert.match(bad.message, new RegExp(`sha256 is ${SHA256}, not the expected ${wrong}`));
  assert.deepEqual(await list(page), [], "the entry was removed");

  const good = await load(page, { sha256: SHA256.toUpperCase() });
  assertFixture(good);
  const [entry] = await list(page);
  assert.equal(entry.verified, true);
  assert.equal(await has(page), true);
  // A complete entry asked for with another hash: refused before any byte reaches the GPU.
  const refused = await load(page, { sha256: wrong });
  assert.equal(refused.name, "IntegrityError");
  assert.deepEqual(await list(page), []);
  await page.context().close();
});

test("quota: too little room, or a QuotaExceededError while writing, still loads (uncached) and says so", async () => {
  const page = await freshPage();
  const small = await load(page, { worker: false }, {
    patch: "navigator.storage.estimate = async () => ({ usage: 0, quota: 1e6 });",
  });
  assertFixture(small);
  assert.match(small.last.cache, /^skipped: not enough storage/);
  assert.equal(small.last.fromNetwork, SMOLLM2_BYTES);
  assert.deepEqual(await list(page), []);

  const page2 = await freshPage();
  const full = await load(page2, { worker: false }, {
    patch: `const put = Cache.prototype.put; let n = 0;
      Cache.prototype.put = function (...a) {
        if (String(a[0]).includes("/chunk-") && ++n > 2) return Promise.reject(new DOMException("full", "QuotaExceededError"));
        return put.apply(this, a);
      };`,
  });
  assertFixture(full);
  assert.deepEqual(full.statuses.filter(Boolean).slice(0, 1), ["writing"]);
  assert.equal(full.last.cache, "skipped: the storage quota was exceeded (loading without caching)");
  assert.equal(full.last.fromNetwork, SMOLLM2_BYTES);
  assert.deepEqual(await list(page2), [], "the partial entry was dropped");
  await page.context().close();
  await page2.context().close();
});

test("a changed ETag drops the cached copy; cache.list/delete/clear/usage do what they say", async () => {
  const page = await freshPage();
  assertFixture(await load(page, { worker: false }));
  await server.fault("etag=-v2");
  const changed = await load(page, { worker: false });
  assertFixture(changed);
  assert.equal(changed.last.fromNetwork, SMOLLM2_BYTES, "the file changed on the server: downloaded again");
  assert.equal(changed.last.cache, "writing");
  await server.fault();
  // Now a second model (two URL parts of the same bytes, cached as one model) and the worker's copy.
  const parts = [`${SMOLLM2}?slice=0-50000017`, `${SMOLLM2}?slice=50000017-${SMOLLM2_BYTES}`];
  assertFixture(await load(page, { worker: false }, { url: parts }));
  assertFixture(await load(page));
  const r = await page.evaluate(async ({ parts, one }) => {
    const { cache } = window.ferrolm;
    const out = { listed: await cache.list(), usage: await cache.usage(), hasParts: await cache.has(parts) };
    out.deleted = await cache.delete(one);
    out.deletedAgain = await cache.delete(one);
    out.afterDelete = await cache.list();
    await cache.clear();
    out.afterClear = await cache.list();
    out.usageAfter = await cache.usage();
    return out;
  }, { parts, one: SMOLLM2 });
  const urls = r.listed.map((e) => JSON.stringify(e.url)).sort();
  assert.deepEqual(urls, [
    JSON.stringify(server.url + SMOLLM2), JSON.stringify(server.url + SMOLLM2), JSON.stringify(parts.map((p) => server.url + p)),
  ].sort(), "two backends' copies of one URL and the two-part model");
  assert.ok(r.listed.every((e) => e.complete && e.bytes === SMOLLM2_BYTES));
  assert.equal(r.usage.bytes, 3 * SMOLLM2_BYTES);
  assert.ok(r.usage.quota > 0);
  assert.equal(r.hasParts, true);
  assert.equal(r.deleted, true);
  assert.equal(r.deletedAgain, false);
  assert.deepEqual(r.afterDelete.map((e) => e.url), [parts.map((p) => server.url + p)]);
  assert.deepEqual(r.afterClear, []);
  assert.equal(r.usageAfter.bytes, 0);
  await page.context().close();
});

test("gguf-split shards are cached as one model (their headers are read before the first shard's tensors)", async () => {
  const page = await freshPage();
  const first = await load(page, { worker: false }, { url: shards });
  assertFixture(first);
  const bytes = shards.reduce((s, u) => s + fs.statSync(path.join(tmp, path.basename(u))).size, 0);
  assert.equal(first.last.fromNetwork, bytes, "each chunk fetched once, though the loader read some twice");
  const [entry] = await list(page);
  assert.deepEqual(entry.url, shards.map((u) => server.url + u));
  assert.equal(entry.complete, true);
  assert.equal(await has(page, shards), true);
  const second = await load(page, { worker: false }, { url: shards });
  assertFixture(second);
  assert.equal(second.last.cache, "hit");
  assert.equal(second.last.fromNetwork, 0);
  await page.context().close();
});

test("the hash's cost: sha256 in wasm, per GB (the README's figure)", async () => {
  const page = await freshPage();
  const r = await page.evaluate(async () => {
    const wasm = await import("/pkg/wasm/ferrolm.js");
    await wasm.default();
    const chunk = new Uint8Array(8 << 20);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
    wasm.sha256Hex(chunk);
    const n = 16;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) wasm.sha256Hex(chunk);
    return { ms: performance.now() - t0, bytes: n * chunk.length, abc: wasm.sha256Hex(new TextEncoder().encode("abc")) };
  });
  assert.equal(r.abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const secondsPerGB = r.ms / 1000 / (r.bytes / 1e9);
  console.log(`# sha256 in wasm: ${secondsPerGB.toFixed(2)} s per GB (${(r.bytes / 1e6 / (r.ms / 1000)).toFixed(0)} MB/s)`);
  assert.ok(secondsPerGB < 60, `${secondsPerGB} s per GB`);
  await page.context().close();
});
