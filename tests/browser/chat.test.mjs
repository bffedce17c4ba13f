// engine.chat.completions.create in real Chromium (engine in its Web Worker): OpenAI-shaped
// streaming chunks and a final usage, the fixture's rendered prompt and greedy continuation,
// stop strings, and a second turn that prefills only its new tokens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, openHarness, SMOLLM2, fixture } from "./helpers.mjs";

const CASE = fixture.generate.find((c) => Array.isArray(c.messages));
const N = 4;

let server, browser, page;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  page = await openHarness(browser, server.url);
  await page.evaluate(async (url) => { window.engine = await window.ferrolm.load(url); }, SMOLLM2);
});
after(async () => {
  await browser?.close();
  server?.close();
});

test("the chat template renders the fixture's chat cases", async () => {
  for (const c of fixture.chat) {
    const r = await page.evaluate((m) => window.engine.applyChatTemplate(m), c.messages);
    assert.equal(r.text, c.text);
  }
  const r = await page.evaluate((m) => window.engine.applyChatTemplate(m), CASE.messages);
  assert.deepEqual(r.ids, CASE.prompt_ids);
});

test("stream: true yields OpenAI chunks with the greedy continuation and a final usage", async () => {
  const r = await page.evaluate(async ({ messages, n }) => {
    const stream = await window.engine.chat.completions.create({
      messages, stream: true, max_tokens: n, temperature: 0, ignore_eos: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
  }, { messages: CASE.messages, n: N });
  const first = r[0];
  const last = r.at(-1);
  for (const c of r) {
    assert.equal(c.object, "chat.completion.chunk");
    assert.equal(c.id, first.id);
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].index, 0);
  }
  assert.deepEqual(first.choices[0].delta, { role: "assistant", content: "" });
  assert.equal(first.choices[0].finish_reason, null);
  assert.equal(last.choices[0].finish_reason, "length");
  assert.deepEqual(last.usage, { prompt_tokens: CASE.prompt_ids.length, completion_tokens: N, total_tokens: CASE.prompt_ids.length + N, prefilled_tokens: CASE.prompt_ids.length });
  const content = r.slice(1, -1).map((c) => c.choices[0].delta.content).join("");
  const want = await page.evaluate((ids) => window.engine.detokenize(ids), CASE.continuation.slice(0, N));
  assert.equal(content, want);
});

test("a second turn prefills only its new tokens; stop strings end the reply", async () => {
  const r = await page.evaluate(async ({ messages }) => {
    const first = await window.engine.chat.completions.create({ messages, max_tokens: 3, temperature: 0 });
    const next = [...messages, first.choices[0].message, { role: "user", content: "And of Italy?" }];
    const second = await window.engine.chat.completions.create({ messages: next, max_tokens: 2, temperature: 0 });
    const stopped = await window.engine.chat.completions.create({ messages, max_tokens: 6, temperature: 0, stop: [" of"] });
    return { first, second, stopped };
  }, { messages: CASE.messages });
  assert.equal(r.first.object, "chat.completion");
  assert.equal(r.first.choices[0].message.role, "assistant");
  assert.equal(r.first.usage.completion_tokens, 3);
  assert.ok(r.second.usage.prompt_tokens > r.first.usage.prompt_tokens);
  assert.ok(
    r.second.usage.prefilled_tokens < r.second.usage.prompt_tokens - r.first.usage.prompt_tokens + 8,
    `only the new turn is computed: ${JSON.stringify(r.second.usage)}`,
  );
  // Greedy reply starts "The capital of France is Paris." — it stops before " of".
  assert.equal(r.stopped.choices[0].message.content, "The capital");
  assert.equal(r.stopped.choices[0].finish_reason, "stop");
});

test("bad requests are typed errors", async () => {
  const r = await page.evaluate(async () => {
    const names = [];
    for (const request of [{}, { messages: [] }, { messages: [{ role: "user" }] }, { messages: [{ role: "user", content: "x" }], n: 2 }]) {
      try {
        await window.engine.chat.completions.create(request);
        names.push("no error");
      } catch (e) {
        names.push(e.name);
      }
    }
    return names;
  });
  assert.deepEqual(r, ["InvalidRequestError", "InvalidRequestError", "InvalidRequestError", "InvalidRequestError"]);
});
