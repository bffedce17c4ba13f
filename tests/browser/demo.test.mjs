// The demo page (www/) as a person uses it, served by scripts/serve.mjs without test hooks
// (exactly what scripts/demo.sh serves): it loads the default model, streams text, shows
// tokens/s, stops on Stop, starts a second visit from the model cache and lists the cached models,
// loads a file from the picker or dropped on the page, and says so when there is no WebGPU.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { startServer, launchBrowser, root, SMOLLM2, fixture } from "./helpers.mjs";

let server, browser, page;
before(async () => {
  server = await startServer([]);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  server?.close();
});

async function waitState(p, state, timeout = 120_000) {
  await p.waitForFunction((s) => document.body.dataset.state === s, state, { timeout });
}

async function setOptions(p, { prompt, maxTokens, temperature, chatml }) {
  await p.fill("#prompt", prompt);
  await p.fill("#max-tokens", String(maxTokens));
  await p.fill("#temperature", String(temperature));
  await p.setChecked("#chatml", chatml);
}

test("the demo loads the default model with a progress bar and streams a greedy completion", async () => {
  // A context of its own: a second tab in the same profile (the same storage) opens in it later.
  page = await (await browser.newContext()).newPage();
  const progress = [];
  await page.exposeFunction("recordProgress", (v) => progress.push(v));
  await page.goto(server.url + "/");
  assert.match(page.url(), /\/www\/$/);
  // Sample the progress bar while the model streams in.
  await page.evaluate(() => {
    const id = setInterval(() => {
      const box = document.getElementById("progress-box");
      if (!box.hidden) window.recordProgress(document.getElementById("progress").value);
      if (document.body.dataset.state === "ready") clearInterval(id);
    }, 50);
  });
  await waitState(page, "ready");
  assert.ok(progress.some((v) => v > 0 && v < 1), `the progress bar moved (${progress.length} samples)`);
  assert.match(await page.textContent("#status"), /^Ready: SmolLM2-135M-Instruct\.Q4_1\.gguf loaded in [\d.]+ s\.$/);
  assert.match(await page.textContent("#info"), /llama, 30 layers/);
  assert.equal(await page.isChecked("#chatml"), true, "the model's chat template is used by default");
  assert.match(await page.textContent("#memory"), /wasm heap [\d.]+ MB/);

  const c = fixture.generate[0];
  await setOptions(page, { prompt: c.prompt, maxTokens: 8, temperature: 0, chatml: false });
  const seen = [];
  await page.exposeFunction("recordOutput", (t) => seen.push(t));
  await page.evaluate(() => new MutationObserver(() => window.recordOutput(document.getElementById("output").textContent))
    .observe(document.getElementById("output"), { childList: true, characterData: true, subtree: true }));
  await page.click("#generate");
  await waitState(page, "generating", 10_000);
  await waitState(page, "ready");
  const output = await page.textContent("#output");
  assert.ok(output.length > 10 && c.text.startsWith(output), `output ${JSON.stringify(output)}`);
  assert.ok(new Set(seen).size >= 4, `the text was streamed in pieces (${new Set(seen).size} updates)`);
  assert.match(await page.textContent("#stats"), /^8 tokens · prompt 4 tokens at [\d.]+ tokens\/s · decode [\d.]+ tokens\/s · length limit$/);
  assert.equal(await page.textContent("#status"), "Done.");
});

test("Stop ends a generation and the page can generate again", async () => {
  await setOptions(page, { prompt: "Tell me a long story about a dragon.", maxTokens: 200, temperature: 0.7, chatml: true });
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("output").textContent.length > 0, null, { timeout: 120_000 });
  await page.click("#stop");
  await waitState(page, "ready", 30_000);
  assert.equal(await page.textContent("#status"), "Stopped.");
  assert.match(await page.textContent("#stats"), /stopped$/);
  const n = Number((await page.textContent("#stats")).split(" ")[0]);
  assert.ok(n >= 1 && n < 200, `${n} tokens before the stop`);
  assert.equal(await page.isEnabled("#generate"), true);
  assert.equal(await page.isDisabled("#stop"), true);

  await setOptions(page, { prompt: fixture.generate[1].prompt, maxTokens: 3, temperature: 0, chatml: false });
  await page.click("#generate");
  await waitState(page, "generating", 10_000);
  await waitState(page, "ready");
  const out = await page.textContent("#output");
  assert.ok(out.length > 0 && fixture.generate[1].text.startsWith(out), JSON.stringify(out));
});

test("a second visit starts from the cache; the cached models are listed, each with a delete button", async () => {
  assert.match(await page.textContent("#source"), /^Downloaded: 98\.\d MB from the network, now in the cache\.$/);
  await page.waitForFunction(() => document.querySelectorAll("#cache-list li .delete").length === 1);
  // Another tab of the same profile: the model comes from the cache, not the network.
  const second = await page.context().newPage();
  await second.goto(server.url + "/");
  await waitState(second, "ready");
  assert.match(await second.textContent("#source"), /^From the cache: 98\.\d MB, no download\.$/);
  await second.waitForFunction(() => document.querySelectorAll("#cache-list li .delete").length === 1);
  assert.match(await second.textContent("#cache-list li"), /SmolLM2-135M-Instruct\.Q4_1\.gguf\s*98\.\d MB\s*Delete/);
  assert.match(await second.textContent("#cache-usage"), /^98\.\d MB used of [\d.]+ MB$/);
  await second.click("#cache-list li .delete");
  await second.waitForFunction(() => document.getElementById("cache-list").textContent === "None yet.");
  assert.deepEqual(await second.evaluate(async () => (await import("/pkg/index.js")).cache.list()), []);
  await second.close();
});

test("a model from the file picker, and one dropped on the page", async () => {
  await page.setInputFiles("#model-file", path.join(root, SMOLLM2));
  await waitState(page, "loading", 10_000);
  await waitState(page, "ready");
  assert.match(await page.textContent("#status"), /^Ready: SmolLM2-135M-Instruct\.Q4_1\.gguf loaded/);

  // Drag and drop: a File in a DataTransfer, dropped on the drop zone.
  await page.evaluate(async (url) => {
    const file = new File([await (await fetch(url)).blob()], "dropped.gguf");
    const data = new DataTransfer();
    data.items.add(file);
    const zone = document.getElementById("drop");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  }, SMOLLM2);
  await waitState(page, "loading", 10_000);
  await waitState(page, "ready");
  assert.match(await page.textContent("#status"), /^Ready: dropped\.gguf loaded/);
  await page.close();
});

test("?model= with a bad URL shows the typed error", async () => {
  const p = await browser.newPage();
  await p.goto(server.url + "/www/?model=/models/missing.gguf");
  await p.waitForFunction(() => document.getElementById("status").classList.contains("error"), null, { timeout: 60_000 });
  assert.match(await p.textContent("#status"), /^NetworkError: HTTP 404/);
  assert.equal(await p.isDisabled("#generate"), true);
  await p.close();
});

test("without WebGPU the page says so", async () => {
  const p = await browser.newPage();
  await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  await p.goto(server.url + "/www/");
  await p.waitForFunction(() => document.body.dataset.state === "no-webgpu");
  assert.equal(await p.isVisible("#no-webgpu"), true);
  assert.match(await p.textContent("#no-webgpu"), /This browser has no WebGPU/);
  assert.equal(await p.isDisabled("#load-url"), true);
  await p.close();
});
