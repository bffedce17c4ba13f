// The demo page's chat (www/chat.js) as a person uses it, on the tiny zoo model at a 256-token
// context (?context=256; its tiny vocabulary spells the chat template out, so a few turns
// outgrow it): two turns, the second reusing the first from the KV cache (the page shows the
// numbers), then more turns until the oldest messages are left out (context_overflow
// "drop_oldest"), Stop, Copy and Clear.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser } from "./helpers.mjs";

const TINY = "/tests/fixtures/zoo/tiny-qwen3-q4_k_m.gguf";
let server, browser, page;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } }); // a phone
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
  page = await context.newPage();
  await page.goto(`${server.url}/www/?model=${TINY}&context=256`);
  await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 120_000 });
  await page.fill("#chat-temperature", "0");
  await page.fill("#chat-max-tokens", "6");
});
after(async () => {
  await browser?.close();
  server?.close();
});

/** Sends `text` and waits for the reply; returns the figures the page shows. */
async function turn(text) {
  await page.fill("#chat-input", text);
  await page.press("#chat-input", "Enter");
  await page.waitForFunction(() => document.getElementById("chat-stats").dataset.prompt !== undefined &&
    !document.querySelector("#chat-log li.writing") && document.body.dataset.state === "ready", null, { timeout: 60_000 });
  const stats = await page.evaluate(() => ({ ...document.getElementById("chat-stats").dataset, text: document.getElementById("chat-stats").textContent }));
  await page.evaluate(() => { for (const k of Object.keys(document.getElementById("chat-stats").dataset)) delete document.getElementById("chat-stats").dataset[k]; });
  return { prompt: Number(stats.prompt), reused: Number(stats.reused), prefilled: Number(stats.prefilled), dropped: Number(stats.dropped), text: stats.text };
}

test("the model picker lists known models and says whether the model is cached", async () => {
  const known = await page.locator("#known-models option").evaluateAll((os) => os.map((o) => o.value));
  assert.ok(known.includes("../models/SmolLM2-135M-Instruct.Q4_1.gguf") && known.length >= 3, known.join(" "));
  await page.waitForFunction(() => document.getElementById("model-cached").textContent.startsWith("In the cache"));
  await page.fill("#model-url", "/models/not-cached.gguf");
  await page.dispatchEvent("#model-url", "input");
  await page.waitForFunction(() => document.getElementById("model-cached").textContent.startsWith("Not cached yet"));
});

test("two turns: the second prefills only its new text; the page shows tokens reused and prefilled", async () => {
  await page.fill("#system", "Be brief.");
  const first = await turn("hi");
  assert.equal(first.reused + first.prefilled, first.prompt);
  assert.match(first.text, new RegExp(`^prompt ${first.prompt} tokens: ${first.reused} reused from the KV cache, ${first.prefilled} prefilled · \\d+ tokens at [\\d.]+ tokens/s$`));
  const second = await turn("and then?");
  assert.ok(second.prompt > first.prompt);
  assert.ok(second.reused >= first.prompt - 2, `the first turn came from the KV cache: ${JSON.stringify({ first, second })}`);
  assert.ok(second.prefilled < second.prompt - first.prompt + 8, JSON.stringify(second));
  assert.equal(second.dropped, 0);
  assert.deepEqual(await page.locator("#chat-log li").evaluateAll((els) => els.map((e) => e.className)), ["user", "assistant", "user", "assistant"]);
  // Copy puts the conversation on the clipboard.
  await page.click("#copy-chat");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(copied, /^user: hi\n\nassistant: [^]*\n\nuser: and then\?\n\nassistant: /);
});

test("a conversation that outgrows the context leaves out its oldest messages (drop_oldest)", async () => {
  let t = null;
  for (let i = 0; i < 6 && !(t && t.dropped > 0); i++) t = await turn(`question number ${i + 3}`);
  assert.ok(t.dropped > 0, "some turn dropped messages");
  assert.ok(t.prompt + 6 <= 256, `the prompt fits with the reply: ${JSON.stringify(t)}`);
  assert.match(t.text, new RegExp(`${t.dropped} old messages? left out to fit the context`));
  assert.equal(await page.locator("#chat-log li.dropped").count(), t.dropped);
});

test("Stop ends a reply, Clear empties the conversation", async () => {
  await page.fill("#chat-max-tokens", "200");
  await page.fill("#chat-input", "tell me a long story");
  await page.press("#chat-input", "Enter");
  await page.waitForFunction(() => (document.querySelector("#chat-log li.writing")?.textContent || "").length > 0, null, { timeout: 60_000 });
  await page.click("#chat-stop");
  await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 30_000 });
  assert.match(await page.textContent("#chat-stats"), / · stopped$/);
  await page.click("#clear-chat");
  assert.equal(await page.locator("#chat-log li").count(), 0);
  assert.equal(await page.textContent("#chat-stats"), "");
  assert.equal(await page.isEnabled("#send"), true);
  // Phone-sized: nothing is wider than the window.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no horizontal scrolling at 390 px");
});
