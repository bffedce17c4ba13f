// The streaming loader in real Chromium: Range requests in bounded chunks, progress, a model
// split over several URLs, a server without Range support, File/Blob sources, abort, the wasm
// heap bound, and the typed errors of bad sources. Engines run on the page's thread here
// ({ worker: false }); generate.test.mjs covers the worker. These tests are of the streaming
// loader itself, so they load with { cache: false }; cache.test.mjs covers the model cache.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { startServer, launchBrowser, openHarness, root, SMOLLM2, SMOLLM2_BYTES, fixture } from "./helpers.mjs";
import { splitGguf } from "./gguf-split.mjs";

const MiB = 1 << 20;
const FIRST = fixture.generate[0]; // "Once upon a time" -> ", the city ..."
const N = 3; // tokens generated per load (SwiftShader is slow)

let server, browser, page, tmp, shards;
before(async () => {
  // gguf-split-style shards of SmolLM2, served under /__tmp/.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-shards-"));
  shards = splitGguf(path.join(root, SMOLLM2), tmp, 3).map((f) => `/__tmp/${path.basename(f)}`);
  server = await startServer(["--test-hooks", "--mount", `/__tmp/=${tmp}`]);
  browser = await launchBrowser();
  page = await openHarness(browser, server.url);
});
after(async () => {
  await browser?.close();
  server?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** In the page: loads `source` (expression evaluated in the page), generates N greedy tokens. */
async function loadAndGenerate(sourceExpr, extra = {}) {
  return page.evaluate(async ({ sourceExpr, prompt, n, extra }) => {
    const { load } = window.ferrolm;
    const source = (0, eval)(sourceExpr);
    const phases = [];
    let weightsDone = [];
    const t0 = performance.now();
    try {
      const engine = await load(await source, {
        worker: false,
        cache: false,
        ...extra,
        onProgress: (p) => {
          if (!phases.length || phases.at(-1) !== p.phase) phases.push(p.phase);
          if (p.phase === "weights") weightsDone.push([p.done, p.total]);
        },
      });
      const loadMs = performance.now() - t0;
      const tokens = [];
      for await (const piece of engine.generate(prompt, { maxTokens: n, temperature: 0, ignoreEos: true })) tokens.push(piece.token);
      const memory = await engine.memory();
      const info = engine.info;
      await engine.dispose();
      return { ok: true, loadMs, phases, weightsDone, tokens, memory, info };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, typed: e instanceof window.ferrolm.FerrolmError };
    }
  }, { sourceExpr, prompt: FIRST.prompt, n: N, extra });
}

test("one URL: Range requests of at most 8 MiB, progress in order, heap far below the model size", async () => {
  await server.clearLog();
  const r = await loadAndGenerate(JSON.stringify(SMOLLM2));
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
  assert.deepEqual(r.phases, ["header", "weights", "shaders", "ready"]);
  const done = r.weightsDone.map(([d]) => d);
  assert.ok(done.every((d, i) => i === 0 || d >= done[i - 1]), "weights progress never goes back");
  assert.equal(done.at(-1), r.weightsDone.at(-1)[1], "weights progress ends at its total");
  assert.ok(r.weightsDone.length >= 10, `weights arrive in many chunks (${r.weightsDone.length} reports)`);
  assert.equal(r.info.fileBytes, SMOLLM2_BYTES);
  assert.equal(r.info.architecture, "llama");
  assert.equal(r.info.quantTypes.Q4_1, 210);
  // The wasm memory never held the model: it stays far below the model's 98 MB.
  assert.ok(r.memory.peakWasmHeapBytes < 64 * MiB, `peak wasm heap ${r.memory.peakWasmHeapBytes} < 64 MiB`);
  assert.ok(r.memory.peakAllocatedBytes < 32 * MiB, `peak allocated ${r.memory.peakAllocatedBytes} < 32 MiB`);
  assert.ok(r.memory.gpuBytes > 90e6, "the weights are on the GPU");

  const log = (await server.log()).filter((e) => e.path === SMOLLM2);
  const gets = log.filter((e) => e.method === "GET");
  assert.ok(gets.every((e) => e.status === 206), "every read is a Range request");
  const sizes = gets.map((e) => e.bytes);
  assert.ok(Math.max(...sizes) <= 8 * MiB, `no response over 8 MiB (largest ${Math.max(...sizes)})`);
  assert.equal(gets[0].range, "bytes=0-0", "a 1-byte probe first");
  assert.equal(gets[1].range, `bytes=0-${MiB - 1}`, "then the first 1 MiB for the header");
  const total = sizes.reduce((a, b) => a + b, 0);
  assert.ok(total < SMOLLM2_BYTES * 1.05, `about one pass over the file (${total} bytes fetched)`);
});

test("several URLs (raw byte chunks of one file, uneven boundaries) load the same model", async () => {
  // Boundaries inside the header and inside a tensor.
  const cuts = [0, 700_001, 50_000_017, SMOLLM2_BYTES];
  const urls = cuts.slice(0, -1).map((a, i) => `${SMOLLM2}?slice=${a}-${cuts[i + 1]}`);
  await server.clearLog();
  const r = await loadAndGenerate(JSON.stringify(urls));
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
  assert.equal(r.info.parts, 3);
  assert.equal(r.info.fileBytes, SMOLLM2_BYTES);
  const log = await server.log();
  for (const u of urls) assert.ok(log.some((e) => e.path === u && e.status === 206 && e.bytes > 1), `${u} was read`);
});

test("the Gemma 3 270M parts (four raw chunks of one file) load as one model and generate its fixture", async () => {
  // Gemma 3: K-quants (Q4_K, Q6_K) and Q5_0/Q8_0 under the browser's WGSL compiler, SentencePiece,
  // and a 262144 x 640 embedding split across storage bindings where the limit demands it.
  const gemma = JSON.parse(fs.readFileSync(path.join(root, "tests/fixtures/gemma-3-270m-q4_k_m.json"), "utf8"));
  const urls = [0, 1, 2, 3].map((i) => `/models/gemma-3-270m-q4_k_m.gguf.part0${i}`);
  await server.clearLog();
  const r = await page.evaluate(async ({ urls, prompt }) => {
    try {
      const engine = await window.ferrolm.load(urls, { worker: false, cache: false, contextLength: 256 });
      const tokens = [];
      for await (const piece of engine.generate(prompt, { maxTokens: 3, ignoreEos: true })) tokens.push(piece.token);
      const out = { ok: true, tokens, info: engine.info, memory: await engine.memory() };
      await engine.dispose();
      return out;
    } catch (e) {
      return { ok: false, name: e.name, message: e.message };
    }
  }, { urls, prompt: gemma.generate[0].prompt });
  assert.ok(r.ok, `${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, gemma.generate[0].continuation.slice(0, 3));
  assert.equal(r.info.parts, 4);
  assert.ok(r.memory.peakWasmHeapBytes < 64 * MiB, `peak wasm heap ${r.memory.peakWasmHeapBytes}`);
  // Each part was probed for its length; the header (a 262k-token vocabulary) was read from the
  // first part in growing Range requests.
  const log = (await server.log()).filter((e) => e.path.includes("gemma"));
  for (const u of urls) assert.ok(log.some((e) => e.path === u && e.range === "bytes=0-0" && e.status === 206), `${u} probed`);
  assert.ok(log.filter((e) => e.path === urls[0] && e.status === 206).length >= 3, "header read in growing requests");
});

test("gguf-split shards (each part a GGUF of its own) load as one model", async () => {
  await server.clearLog();
  const r = await loadAndGenerate(JSON.stringify(shards));
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
  assert.equal(r.info.parts, 3);
  assert.equal(r.info.quantTypes.Q4_1, 210);
  assert.ok(r.memory.peakWasmHeapBytes < 64 * MiB);
  const log = await server.log();
  for (const u of shards) {
    const read = log.filter((e) => e.path === u).reduce((a, e) => a + (e.bytes || 0), 0);
    const size = fs.statSync(path.join(tmp, path.basename(u))).size;
    assert.ok(read > 0.9 * size && read < 1.1 * size, `${u}: ${read} of ${size} bytes read`);
  }
});

test("incomplete or misordered shards are an UnsupportedModelError saying what to give", async () => {
  const one = await loadError(shards[0]);
  assert.deepEqual(one.instanceOf, ["UnsupportedModelError"], `${one.name}: ${one.message}`);
  assert.match(one.message, /shard 1 of 3 .* 1 part\(s\) were given: give all 3 shard URLs in order/);
  const swapped = await loadError([shards[0], shards[2], shards[1]]);
  assert.deepEqual(swapped.instanceOf, ["UnsupportedModelError"], `${swapped.name}: ${swapped.message}`);
  assert.match(swapped.message, /part 2 is not shard 2 of 3/);
});

test("cross-origin without exposed Content-Range: the length comes from HEAD", async () => {
  // The page is on 127.0.0.1, the model on localhost: another origin.
  const url = `${server.url.replace("127.0.0.1", "localhost")}${SMOLLM2}?noexpose`;
  await server.clearLog();
  const r = await loadAndGenerate(JSON.stringify(url));
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
  const log = (await server.log()).filter((e) => e.path === `${SMOLLM2}?noexpose`);
  assert.equal(log.filter((e) => e.method === "HEAD").length, 1);
  assert.ok(log.filter((e) => e.method === "GET").every((e) => e.status === 206));
});

test("a server without Range support: the body is read sequentially", async () => {
  await server.clearLog();
  const url = `${SMOLLM2}?norange`;
  const r = await loadAndGenerate(JSON.stringify(url));
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
  assert.ok(r.memory.peakWasmHeapBytes < 64 * MiB, `peak wasm heap ${r.memory.peakWasmHeapBytes} < 64 MiB`);
  const gets = (await server.log()).filter((e) => e.path === url);
  assert.ok(gets.every((e) => e.status === 200));
  // The probe's body is kept and read on; at most one restart (when the header read ran past
  // the first tensor).
  assert.ok(gets.length >= 1 && gets.length <= 2, `${gets.length} requests`);
  assert.ok(gets.reduce((a, e) => a + e.bytes, 0) < 2 * SMOLLM2_BYTES, "at most one restart");
});

test("a File from a file input (Blob.slice reads)", async () => {
  await page.evaluate(() => {
    const input = document.createElement("input");
    input.type = "file";
    input.id = "file";
    document.body.append(input);
  });
  await page.setInputFiles("#file", path.join(root, SMOLLM2));
  const r = await loadAndGenerate("document.getElementById('file').files[0]");
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
  assert.equal(r.info.fileBytes, SMOLLM2_BYTES);
  assert.ok(r.memory.peakWasmHeapBytes < 64 * MiB);
});

test("a Blob built in the page", async () => {
  // Whole file in JS memory for this test only; the loader reads it in slices.
  const r = await loadAndGenerate(`fetch(${JSON.stringify(SMOLLM2)}).then((r) => r.blob())`);
  assert.ok(r.ok, `load failed: ${r.name}: ${r.message}`);
  assert.deepEqual(r.tokens, FIRST.continuation.slice(0, N));
});

for (const worker of [false, true]) test(`aborting a load rejects with AbortError and stops fetching (worker: ${worker})`, async () => {
  await server.clearLog();
  const r = await page.evaluate(async ({ url, worker }) => {
    const { load } = window.ferrolm;
    const controller = new AbortController();
    let weightReports = 0;
    try {
      await load(url, {
        worker,
        cache: false,
        signal: controller.signal,
        onProgress: (p) => { if (p.phase === "weights" && ++weightReports === 3) controller.abort(); },
      });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, isAbort: e instanceof window.ferrolm.AbortError, weightReports };
    }
  }, { url: SMOLLM2, worker });
  assert.equal(r.ok, false);
  assert.equal(r.name, "AbortError");
  assert.ok(r.isAbort);
  // On the page's thread nothing runs after the abort; a worker may have posted a report or two
  // while the abort message was on its way.
  if (worker) assert.ok(r.weightReports >= 3 && r.weightReports <= 6, `${r.weightReports} reports`);
  else assert.equal(r.weightReports, 3, "no progress after the abort");
  await new Promise((res) => setTimeout(res, 300));
  const fetched = (await server.log()).filter((e) => e.path === SMOLLM2).reduce((a, e) => a + (e.bytes || 0), 0);
  assert.ok(fetched < 40 * MiB, `stopped early: ${fetched} bytes fetched`);
});

/** Loads a bad source and returns the error seen in the page. */
async function loadError(url, extra = {}) {
  return page.evaluate(async ({ url, extra }) => {
    const f = window.ferrolm;
    try {
      const engine = await f.load(url, { worker: false, cache: false, ...extra });
      await engine.dispose();
      return { ok: true };
    } catch (e) {
      const classes = ["ModelFormatError", "NetworkError", "UnsupportedModelError", "WebGPUUnavailableError", "AbortError", "DeviceLimitError", "InvalidRequestError"];
      return { ok: false, name: e.name, message: e.message, instanceOf: classes.filter((c) => e instanceof f[c]), base: e instanceof f.FerrolmError };
    }
  }, { url, extra });
}

test("a 404 is a NetworkError naming the status", async () => {
  const e = await loadError("/models/no-such-model.gguf");
  assert.equal(e.ok, false);
  assert.deepEqual(e.instanceOf, ["NetworkError"]);
  assert.ok(e.base);
  assert.match(e.message, /HTTP 404/);
  assert.match(e.message, /no-such-model\.gguf/);
});

test("a truncated model file is a ModelFormatError", async () => {
  for (const size of [1000, 50_000_000]) {
    const e = await loadError(`${SMOLLM2}?truncate=${size}`);
    assert.equal(e.ok, false, `truncated to ${size}`);
    assert.deepEqual(e.instanceOf, ["ModelFormatError"], `truncated to ${size}: ${e.name}: ${e.message}`);
    assert.match(e.message, /invalid GGUF/);
  }
});

test("a transfer cut off mid-way is a NetworkError", async () => {
  const e = await loadError(`${SMOLLM2}?cut=30000000`);
  assert.equal(e.ok, false);
  assert.deepEqual(e.instanceOf, ["NetworkError"], `${e.name}: ${e.message}`);
});

test("a file that is not GGUF is a ModelFormatError", async () => {
  const e = await loadError("/tests/fixtures/smollm2-135m-instruct-q4_1.json");
  assert.equal(e.ok, false);
  assert.deepEqual(e.instanceOf, ["ModelFormatError"], `${e.name}: ${e.message}`);
  assert.match(e.message, /magic/i);
});

test("an architecture the engine cannot run is an UnsupportedModelError", async () => {
  // Same file, with general.architecture's value "llama" replaced by "mamba".
  const head = Buffer.alloc(1 << 16);
  const fd = fs.openSync(path.join(root, SMOLLM2), "r");
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  const key = head.indexOf("general.architecture");
  assert.ok(key > 0);
  const value = key + "general.architecture".length + 4 + 8; // u32 type, u64 length
  assert.equal(head.toString("latin1", value, value + 5), "llama");
  const e = await loadError(`${SMOLLM2}?patch=${value}:${Buffer.from("mamba").toString("hex")}`);
  assert.equal(e.ok, false);
  assert.deepEqual(e.instanceOf, ["UnsupportedModelError"], `${e.name}: ${e.message}`);
  assert.match(e.message, /mamba/);
});

test("a bad source argument is an InvalidRequestError", async () => {
  const e = await page.evaluate(async () => {
    try {
      await window.ferrolm.load(42);
    } catch (e) {
      return { name: e.name, invalid: e instanceof window.ferrolm.InvalidRequestError };
    }
  });
  assert.deepEqual(e, { name: "InvalidRequestError", invalid: true });
});

test("without WebGPU, load rejects with WebGPUUnavailableError", async () => {
  const p = await browser.newPage();
  await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  await p.goto(server.url + "/tests/browser/pages/harness.html");
  await p.waitForFunction(() => window.harnessReady === true);
  const e = await p.evaluate(async (url) => {
    try {
      await window.ferrolm.load(url);
    } catch (e) {
      return { name: e.name, typed: e instanceof window.ferrolm.WebGPUUnavailableError, message: e.message };
    }
  }, SMOLLM2);
  await p.close();
  assert.equal(e.name, "WebGPUUnavailableError");
  assert.ok(e.typed);
  assert.match(e.message, /WebGPU/);
});
