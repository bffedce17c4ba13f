// The engine survives faults, in real Chromium (SwiftShader WebGPU), on both paths (the default
// Web Worker and `worker: false`): a lost GPU device, a wasm trap, an abort storm, concurrent
// calls, dispose during a generation, and the pre-check of the device limits before any weight
// is fetched. A tiny zoo model keeps it fast; its fixture gives the greedy tokens (all 16 steps
// have a clear margin).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, launchBrowser, openHarness, root, SMOLLM2 } from "./helpers.mjs";

const TINY = "/tests/fixtures/zoo/tiny-qwen3-q4_k_m.gguf";
const tiny = JSON.parse(fs.readFileSync(path.join(root, TINY.replace(/\.gguf$/, ".json")), "utf8"));
const [A, B] = tiny.generate; // { prompt_ids, continuation } (greedy, 16 tokens)
const N = 16;

let server, browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  server?.close();
});

/** A harness page with test helpers: window.load(worker) loads the tiny model into
 * window.engine; window.collect(prompt, options, onPiece) gathers a generation as
 * { tokens, error?, isAbort?, message? }; window.devices holds every GPUDevice the page opened;
 * window.workers every Worker it started. */
async function openPage() {
  const page = await openHarness(browser, server.url);
  await page.evaluate((url) => {
    window.devices = [];
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...args) {
      const device = await requestDevice.apply(this, args);
      window.devices.push(device);
      return device;
    };
    window.workers = [];
    const PageWorker = window.Worker;
    window.Worker = class extends PageWorker {
      constructor(...args) {
        super(...args);
        window.workers.push(this);
      }
    };
    window.load = async (worker) => {
      window.engine = await window.ferrolm.load(url, { worker, cache: false });
      return window.engine.info.contextLength;
    };
    window.errorOf = (e) => ({
      error: e.name, message: e.message, reason: e.reason,
      isAbort: e instanceof window.ferrolm.AbortError,
      isLost: e instanceof window.ferrolm.DeviceLostError && e instanceof window.ferrolm.GPUDeviceError,
      isCrash: e instanceof window.ferrolm.EngineCrashedError,
    });
    window.collect = async (prompt, options, onPiece, engine = window.engine) => {
      const tokens = [];
      try {
        for await (const piece of engine.generate(prompt, options)) {
          if (piece.token < 0) continue; // a final piece that only flushes held-back text
          tokens.push(piece.token);
          if (onPiece) onPiece(tokens.length);
        }
        return { tokens };
      } catch (e) {
        return { tokens, ...window.errorOf(e) };
      }
    };
    window.settle = async (promise) => {
      try {
        return { value: await promise };
      } catch (e) {
        return window.errorOf(e);
      }
    };
  }, TINY);
  return page;
}

/** The first `n` greedy tokens of case `c` on the page's engine. */
async function greedy(page, c, n = N) {
  return page.evaluate(({ ids, n }) => window.collect(ids, { maxTokens: n, temperature: 0, ignoreEos: true }), { ids: c.prompt_ids, n });
}

for (const worker of [true, false]) {
  const mode = worker ? "worker" : "in-thread";

  test(`${mode}: a lost device rejects the running and queued calls with DeviceLostError; a new load works`, async () => {
    const page = await openPage();
    try {
      const context = await page.evaluate((w) => window.load(w), worker);
      const r = await page.evaluate(async ({ a, b, worker, maxTokens }) => {
        const engine = window.engine;
        const destroy = () => {
          if (worker) window.workers.at(-1).postMessage({ id: 1e9, op: "__testDestroyDevice" });
          else window.devices.at(-1).destroy();
        };
        const options = { maxTokens, temperature: 0, ignoreEos: true };
        const running = window.collect(a, options, (n) => { if (n === 2) destroy(); });
        const queued = [window.collect(b, options), window.settle(engine.tokenize("hello")), window.settle(engine.countTokens("hello"))];
        const results = await Promise.all([running, ...queued]);
        const lost = await engine.lost;
        const t0 = performance.now();
        const later = await window.settle(engine.tokenize("hello"));
        const laterMs = performance.now() - t0;
        return { results, lost, later, laterMs };
      }, { a: A.prompt_ids, b: B.prompt_ids, worker, maxTokens: Math.min(200, context - A.prompt_ids.length) });
      const [running, ...queued] = r.results;
      assert.equal(running.error, "DeviceLostError", running.message);
      assert.ok(running.isLost, "a DeviceLostError is a GPUDeviceError");
      assert.equal(running.reason, "destroyed");
      assert.ok(running.tokens.length >= 2 && running.tokens.length < 200, `stopped mid-generation (${running.tokens.length} tokens)`);
      assert.deepEqual(running.tokens.slice(0, 2), A.continuation.slice(0, 2));
      for (const q of queued) assert.equal(q.error, "DeviceLostError", JSON.stringify(q));
      assert.equal(r.lost.reason, "destroyed");
      assert.equal(typeof r.lost.message, "string");
      assert.equal(r.later.error, "DeviceLostError");
      assert.ok(r.laterMs < 50, `a later call rejects at once (${r.laterMs} ms)`);

      await page.evaluate((w) => window.load(w), worker);
      const again = await greedy(page, A);
      assert.equal(again.error, undefined, again.message);
      assert.deepEqual(again.tokens, A.continuation.slice(0, N));
    } finally {
      await page.close();
    }
  });

  test(`${mode}: a wasm trap mid-generation becomes EngineCrashedError for every call`, async () => {
    const page = await openPage();
    try {
      await page.evaluate((w) => window.load(w), worker);
      const r = await page.evaluate(async ({ a, b, worker }) => {
        const engine = window.engine;
        // Test-only: arms an `unreachable` trap in the next generated piece of that instance.
        if (worker) window.workers.at(-1).postMessage({ id: 1e9, op: "__testArmTrap" });
        else (await import("/pkg/wasm/ferrolm.js")).__testArmTrap();
        const options = { maxTokens: 8, temperature: 0, ignoreEos: true };
        const running = window.collect(a, options);
        const queued = [window.collect(b, options), window.settle(engine.tokenize("hello"))];
        const timeout = new Promise((resolve) => setTimeout(() => resolve("hang"), 20_000));
        const results = await Promise.race([Promise.all([running, ...queued]), timeout]);
        const later = await window.settle(engine.countTokens("hello"));
        const reload = await window.settle(window.load(worker));
        return { results, later, reload, workers: window.workers.length };
      }, { a: A.prompt_ids, b: B.prompt_ids, worker });
      assert.notEqual(r.results, "hang", "every call settles");
      for (const c of r.results) {
        assert.equal(c.error, "EngineCrashedError", JSON.stringify(c));
        assert.ok(c.isCrash);
      }
      assert.equal(r.later.error, "EngineCrashedError");
      if (worker) {
        assert.equal(r.reload.error, undefined, r.reload.message);
        assert.equal(r.workers, 2, "the new load started a fresh worker");
        const again = await greedy(page, A);
        assert.equal(again.error, undefined, again.message);
        assert.deepEqual(again.tokens, A.continuation.slice(0, N));
      } else {
        // One wasm instance per thread: the page must be reloaded.
        assert.equal(r.reload.error, "EngineCrashedError");
        assert.match(r.reload.message, /reload the page/);
      }
    } finally {
      await page.close();
    }
  });

  test(`${mode}: an abort storm of 100 generations with tokenize/countTokens: all settle, memory returns, greedy is exact; concurrent calls queue in order; dispose aborts`, async () => {
    const page = await openPage();
    try {
      await page.evaluate((w) => window.load(w), worker);
      const storm = await page.evaluate(async ({ a, text }) => {
        const engine = window.engine;
        const baseline = await engine.memory();
        const expectIds = await engine.tokenize(text);
        let seed = 12345;
        const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
        const calls = [];
        const checks = [];
        for (let i = 0; i < 100; i++) {
          const controller = new AbortController();
          const options = { maxTokens: 6, temperature: 0, ignoreEos: true, signal: controller.signal };
          const moment = i % 4;
          let onPiece;
          if (moment === 0) controller.abort(); // before the call
          else if (moment === 1) setTimeout(() => controller.abort(), random() * 40); // queued or prefilling
          else if (moment === 2) { const k = 1 + Math.floor(random() * 5); onPiece = (n) => { if (n === k) controller.abort(); }; } // decoding
          calls.push(window.collect(a, options, onPiece).then((r) => {
            if (moment === 3) controller.abort(); // after the end
            return { ...r, moment };
          }));
          if (i % 5 === 0) checks.push(engine.tokenize(text).then((ids) => JSON.stringify(ids) === JSON.stringify(expectIds)));
          if (i % 5 === 2) checks.push(engine.countTokens(text).then((n) => n === expectIds.length));
        }
        const results = await Promise.all(calls);
        const checked = await Promise.all(checks);
        const memory = await engine.memory();
        return { baseline, memory, results, checked };
      }, { a: A.prompt_ids, text: "The quick brown fox" });
      for (const [i, r] of storm.results.entries()) {
        assert.ok(r.error === undefined || r.error === "AbortError", `call ${i}: ${r.error} ${r.message}`);
        assert.deepEqual(r.tokens, A.continuation.slice(0, r.tokens.length), `call ${i}'s tokens are the greedy ones`);
        if (r.moment === 0) assert.equal(r.error, "AbortError");
        if (r.moment === 3) assert.equal(r.error, undefined);
      }
      assert.ok(storm.results.filter((r) => r.error === "AbortError").length >= 50);
      assert.ok(storm.checked.every(Boolean), "tokenize and countTokens in the storm answer right");
      assert.equal(storm.memory.gpuBytes, storm.baseline.gpuBytes);
      assert.ok(storm.memory.allocatedBytes - storm.baseline.allocatedBytes < 1 << 20,
        `the wasm heap is back to its baseline (${storm.baseline.allocatedBytes} -> ${storm.memory.allocatedBytes})`);
      const after = await greedy(page, A);
      assert.equal(after.error, undefined, after.message);
      assert.deepEqual(after.tokens, A.continuation.slice(0, N));

      // Concurrent calls: queued in call order, never interleaved, each with its solo tokens.
      const solo = [(await greedy(page, B, 8)).tokens, (await greedy(page, A, 12)).tokens];
      const together = await page.evaluate(async ({ a, b }) => {
        const events = [];
        const run = (name, ids, n) => window.collect(ids, { maxTokens: n, temperature: 0, ignoreEos: true }, () => events.push(name));
        const results = await Promise.all([run("b", b, 8), run("a", a, 12), run("b2", b, 8)]);
        return { results, events };
      }, { a: A.prompt_ids, b: B.prompt_ids });
      assert.deepEqual(together.results.map((r) => r.tokens), [solo[0], solo[1], solo[0]]);
      assert.deepEqual(together.events, [...Array(8).fill("b"), ...Array(12).fill("a"), ...Array(8).fill("b2")]);

      // dispose() during a generation: it and the queued call reject with AbortError.
      const disposed = await page.evaluate(async ({ a, b }) => {
        const engine = window.engine;
        let disposing;
        const options = { maxTokens: 100, temperature: 0, ignoreEos: true };
        const running = window.collect(a, options, (n) => { if (n === 2) disposing = engine.dispose(); });
        const queued = window.collect(b, options);
        const results = await Promise.all([running, queued]);
        await disposing;
        const memory = await window.settle(engine.memory());
        const later = await window.settle(engine.tokenize("hi"));
        return { results, memory, later };
      }, { a: A.prompt_ids, b: B.prompt_ids });
      for (const r of disposed.results) assert.equal(r.error, "AbortError", JSON.stringify(r));
      assert.ok(disposed.results[0].tokens.length < 10);
      assert.equal(disposed.later.error, "InvalidRequestError");
      // In-thread, memory() still answers: nothing is held. The worker is gone altogether.
      if (!worker) assert.equal(disposed.memory.value.gpuBytes, 0);
    } finally {
      await page.close();
    }
  });
}

test("pre-check: a context too large for the device's limits is DeviceLimitError before any weight is fetched", async () => {
  const page = await openHarness(browser, server.url);
  try {
    await server.clearLog();
    const r = await page.evaluate(async (url) => {
      // This adapter offers a 4 MiB binding: SmolLM2's KV cache at 8192 tokens needs 6 MiB per layer.
      const limits = Object.getOwnPropertyDescriptor(GPUAdapter.prototype, "limits").get;
      Object.defineProperty(GPUAdapter.prototype, "limits", {
        get() {
          const real = limits.call(this);
          const fake = {};
          for (const k in real) fake[k] = real[k];
          fake.maxStorageBufferBindingSize = 4 << 20;
          fake.maxBufferSize = 4 << 20;
          return fake;
        },
      });
      try {
        // Without the cache: the cache prefetches its first chunks while the header is read
        // (they are kept, so a retry with a smaller context does not fetch them again).
        await window.ferrolm.load(url, { worker: false, cache: false, contextLength: 8192 });
        return { error: null };
      } catch (e) {
        return { error: e.name, isLimit: e instanceof window.ferrolm.DeviceLimitError, message: e.message };
      }
    }, SMOLLM2);
    assert.equal(r.error, "DeviceLimitError", r.message);
    assert.ok(r.isLimit);
    assert.match(r.message, /maxStorageBufferBindingSize of 4\.0 MiB/);
    assert.match(r.message, /8192 tokens needs 6\.0 MiB per layer/);
    assert.match(r.message, /at most 5461 tokens fits/);
    const log = (await server.log()).filter((e) => e.path.startsWith(SMOLLM2));
    const fetched = log.reduce((sum, e) => sum + (e.bytes || 0), 0);
    assert.ok(fetched < 8 << 20, `only the header was fetched (${fetched} bytes in ${log.length} requests)`);
  } finally {
    await page.close();
  }
});
