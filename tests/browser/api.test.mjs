// The two engines (the worker proxy and the in-thread engine) behave the same at the edges of the
// API: memory() answers during a generation with the GPU bytes, the prompt is checked in one
// place, calls after dispose and bad prompts give the same typed errors, and a browser without
// WebGPU gets one message whichever engine was asked for.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, openHarness, SMOLLM2, fixture } from "./helpers.mjs";

let server, browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  server?.close();
});

for (const worker of [true, false]) {
  test(`the ${worker ? "worker proxy" : "in-thread engine"}: memory() during a generation, typed errors, camelCase limits`, async () => {
    const page = await openHarness(browser, server.url);
    const r = await page.evaluate(async ({ url, worker, prompt }) => {
      const f = window.ferrolm;
      const engine = await f.load(url, { worker, cache: false });
      /** The error a call throws: [name, typed, message]. */
      const error = async (call) => {
        try {
          await call();
          return null;
        } catch (e) {
          return [e.name, e instanceof f.FerrolmError, e.message];
        }
      };
      // memory() while a generation runs: answered at once, with the GPU bytes.
      let pieces = 0;
      let during = null;
      let memoryBeforeEnd = false;
      let finished = false;
      for await (const piece of engine.generate(prompt, { maxTokens: 4, ignoreEos: true })) {
        void piece;
        if (++pieces === 1) {
          during = engine.memory().then((m) => { memoryBeforeEnd = !finished; return m; });
        }
      }
      finished = true;
      const memory = await during;
      const badPrompts = [
        await error(async () => { for await (const p of engine.generate({ text: "x" })) void p; }),
        await error(async () => { for await (const p of engine.generate([1, -1])) void p; }),
        await error(async () => { for await (const p of engine.generate([1.5])) void p; }),
      ];
      const limits = engine.info.adapter.limits;
      await engine.dispose();
      const afterDispose = [
        await error(() => engine.tokenize("hi")),
        await error(() => engine.detokenize([1, 2])),
        await error(() => engine.reset()),
        await error(() => engine.applyChatTemplate([{ role: "user", content: "hi" }])),
      ];
      return { memory, memoryBeforeEnd, pieces, badPrompts, afterDispose, limits };
    }, { url: SMOLLM2, worker, prompt: fixture.generate[0].prompt });
    assert.equal(r.pieces, 4);
    assert.ok(r.memory.gpuBytes > 90e6, `GPU bytes during a generation: ${r.memory.gpuBytes}`);
    assert.equal(r.memoryBeforeEnd, true, "memory() was not queued behind the generation");
    assert.deepEqual(r.badPrompts.map((e) => e.slice(0, 2)), Array(3).fill(["InvalidRequestError", true]));
    assert.match(r.badPrompts[0][2], /the prompt must be a string or an array of token ids/);
    assert.match(r.badPrompts[1][2], /token ids must be integers/);
    assert.deepEqual(r.afterDispose.map((e) => e && e.slice(0, 2)), Array(4).fill(["InvalidRequestError", true]));
    assert.deepEqual(Object.keys(r.limits).sort(), [
      "maxBufferSize", "maxInvocationsPerWorkgroup", "maxStorageBinding", "maxWorkgroupStorage", "maxWorkgroupsPerDim",
      "shaderF16", "subgroups", "uniformAlign",
    ]);
    await page.close();
  });
}

test("without WebGPU both engines give the same WebGPUUnavailableError", async () => {
  const p = await browser.newPage();
  await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  await p.goto(server.url + "/tests/browser/pages/harness.html");
  await p.waitForFunction(() => window.harnessReady === true);
  const errors = await p.evaluate(async (url) => {
    const out = [];
    for (const worker of [true, false]) {
      try {
        await window.ferrolm.load(url, { worker });
      } catch (e) {
        out.push([e.name, e instanceof window.ferrolm.WebGPUUnavailableError, e.message]);
      }
    }
    return out;
  }, SMOLLM2);
  await p.close();
  assert.equal(errors.length, 2);
  assert.deepEqual(errors[0], errors[1]);
  assert.equal(errors[0][0], "WebGPUUnavailableError");
  assert.match(errors[0][2], /navigator\.gpu is missing/);
});
