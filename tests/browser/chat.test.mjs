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

test("context_overflow: \"drop_oldest\" leaves out the oldest turns after the system message; \"error\" keeps the request as it is", async () => {
  // The tiny zoo model at a 256-token context (its tiny vocabulary spells the template out): a few turns outgrow it.
  const r = await page.evaluate(async (url) => {
    const tiny = await window.ferrolm.load(url, { contextLength: 256, cache: false });
    const turns = ["first question about the weather", "first answer about the weather",
      "second question about the sea", "second answer about the sea",
      "third question about mountains", "third answer about mountains", "last question"];
    const messages = [{ role: "system", content: "Be brief." },
      ...turns.map((content, i) => ({ role: i % 2 ? "assistant" : "user", content }))];
    const request = { messages, max_tokens: 4, temperature: 0, ignore_eos: true };
    const lengths = [];
    for (let k = 0; k < turns.length; k++) {
      lengths.push((await tiny.applyChatTemplate([messages[0], ...messages.slice(1 + k)])).ids.length);
    }
    const dropped = await tiny.chat.completions.create({ ...request, context_overflow: "drop_oldest" });
    const streamed = [];
    for await (const c of await tiny.chat.completions.create({ ...request, stream: true, context_overflow: "drop_oldest" })) streamed.push(c);
    const fits = await tiny.chat.completions.create({ ...request, messages: [messages[0], messages.at(-1)], context_overflow: "drop_oldest" });
    const outcome = async (req) => {
      try { await tiny.chat.completions.create(req); return "no error"; } catch (e) { return e.name; }
    };
    const errorMode = await outcome({ ...request, max_tokens: 4 });
    const badValue = await outcome({ ...request, context_overflow: "truncate" });
    const plain = await tiny.chat.completions.create({ ...request, messages: [messages[0], messages.at(-1)] });
    await tiny.dispose();
    return { context: 256, lengths, dropped: dropped.usage, streamed: streamed.at(-1).usage, fits: fits.usage, errorMode, badValue, plain: plain.usage };
  }, "/tests/fixtures/zoo/tiny-qwen3-q4_k_m.gguf");
  const budget = r.context - 4;
  const want = r.lengths.findIndex((n) => n <= budget);
  assert.ok(r.lengths[0] > r.context, `the whole conversation outgrows the context: ${r.lengths}`);
  assert.ok(want > 0, `some turns must go: ${r.lengths}`);
  assert.equal(r.dropped.dropped_messages, want);
  assert.equal(r.dropped.prompt_tokens, r.lengths[want]);
  assert.equal(r.dropped.completion_tokens, 4);
  assert.equal(r.streamed.dropped_messages, want);
  assert.equal(r.streamed.prompt_tokens, r.lengths[want]);
  assert.equal(r.fits.dropped_messages, 0);
  assert.equal(r.errorMode, "InvalidRequestError", "the default leaves the too-long prompt as it is");
  assert.equal(r.badValue, "InvalidRequestError");
  assert.equal(r.plain.dropped_messages, undefined, "only drop_oldest reports dropped_messages");
});
