// The npm package's load + generate in real Chromium, in its default mode (the engine in a Web
// Worker): the SmolLM2 fixture's greedy continuations, tokenize, KV-cache reuse, aborting and
// leaving a generation early, queued concurrent generations, speculative decoding, memory, dispose.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, openHarness, SMOLLM2, fixture } from "./helpers.mjs";

const MiB = 1 << 20;
const N = 16; // tokens checked per fixture case

let server, browser, page;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  page = await openHarness(browser, server.url);
  const loaded = await page.evaluate(async (url) => {
    const phases = [];
    window.engine = await window.ferrolm.load(url, {
      onProgress: (p) => { if (phases.at(-1) !== p.phase) phases.push(p.phase); },
    });
    // Collects a generation: { tokens, text, error? } (the error's name and class check).
    window.collect = async (prompt, options, stopAfter) => {
      const tokens = [];
      let text = "";
      try {
        for await (const piece of window.engine.generate(prompt, options)) {
          tokens.push(piece.token);
          text += piece.text;
          if (stopAfter && stopAfter(tokens.length)) break;
        }
        return { tokens, text };
      } catch (e) {
        return { tokens, text, error: e.name, isAbort: e instanceof window.ferrolm.AbortError, message: e.message };
      }
    };
    return { phases, info: window.engine.info };
  }, SMOLLM2);
  assert.deepEqual(loaded.phases, ["header", "weights", "shaders", "ready"]);
});
after(async () => {
  await browser?.close();
  server?.close();
});

test("the engine runs in a worker: the page itself never fetched the wasm", async () => {
  const r = await page.evaluate(() => ({
    pageWasm: performance.getEntriesByType("resource").filter((e) => e.name.endsWith(".wasm")).length,
    info: window.engine.info,
  }));
  assert.equal(r.pageWasm, 0);
  assert.equal(r.info.architecture, "llama");
  assert.equal(r.info.vocabSize, 49152);
  assert.equal(r.info.layers, 30);
  assert.equal(r.info.contextLength, 4096);
  assert.equal(r.info.adapter.backend, "BrowserWebGpu");
  assert.ok(r.info.adapter.name.length > 0);
  assert.ok(r.info.adapter.limits.maxStorageBinding >= 128 * MiB);
});

test("the matrix kernels are autotuned once per adapter and cached in localStorage", async () => {
  const r = await page.evaluate(async (url) => {
    const first = window.engine.info.kernels;
    const stored = JSON.parse(localStorage.getItem("ferrolm.kernels") || "{}");
    const again = await window.ferrolm.load(url);
    const second = again.info.kernels;
    await again.dispose();
    let bad = null;
    try {
      await window.ferrolm.load(url, { kernelVariant: "t3r1-fast" });
    } catch (e) {
      bad = { name: e.name, message: e.message };
    }
    return { first, stored, second, bad };
  }, SMOLLM2);
  // SmolLM2's decode step has five matrix shapes (attention input, output projection,
  // feed-forward input, down projection, output head), a prefill chunk four.
  assert.equal(r.first.tune.timed, 9, JSON.stringify(r.first));
  assert.equal(Object.keys(r.first.choices).length, 9);
  assert.ok(r.first.tune.seconds > 0 && r.first.tune.candidates.length >= 2);
  assert.deepEqual(r.stored[r.first.adapterKey], r.first.choices);
  assert.deepEqual({ timed: r.second.tune.timed, cached: r.second.tune.cached }, { timed: 0, cached: 9 });
  assert.deepEqual(r.second.choices, r.first.choices);
  assert.equal(r.bad?.name, "InvalidRequestError", JSON.stringify(r.bad));
  assert.match(r.bad.message, /t3r1-fast/);
});

test("tokenize reproduces the fixture's ids", async () => {
  for (const c of fixture.tokenize) {
    const ids = await page.evaluate((t) => window.engine.tokenize(t), c.text);
    assert.deepEqual(ids, c.ids, JSON.stringify(c.text));
  }
});

// Prompt cases use their prompt; chat cases feed the decoded prompt text (chat templates are not
// in the engine yet), after checking that it tokenizes back to the fixture's prompt ids.
let previousPrompt = null;
for (const [i, c] of fixture.generate.entries()) {
  const label = c.prompt !== undefined ? JSON.stringify(c.prompt) : `chat: ${JSON.stringify(c.messages.at(-1).content)}`;
  test(`greedy generate reproduces the fixture's first ${N} tokens (case ${i}, ${label})`, async () => {
    let prompt = c.prompt;
    if (prompt === undefined) {
      prompt = await page.evaluate((ids) => window.engine.detokenize(ids), c.prompt_ids);
      assert.match(prompt, /^<\|im_start\|>system\n/);
    }
    const ids = await page.evaluate((t) => window.engine.tokenize(t), prompt);
    assert.deepEqual(ids, c.prompt_ids, "the prompt tokenizes to the fixture's ids (SmolLM2 adds no BOS)");
    const r = await page.evaluate(async ({ prompt, n }) => {
      const out = await window.collect(prompt, { maxTokens: n, temperature: 0, ignoreEos: true });
      return { ...out, stats: window.engine.stats };
    }, { prompt, n: N });
    assert.equal(r.error, undefined, r.message);
    assert.deepEqual(r.tokens, c.continuation.slice(0, N));
    assert.ok(r.text.length > 0 && c.text.startsWith(r.text), `text ${JSON.stringify(r.text)} starts the fixture's`);
    assert.equal(r.stats.promptTokens, c.prompt_ids.length);
    assert.equal(r.stats.generatedTokens, N);
    assert.equal(r.stats.finishReason, "length");
    assert.ok(r.stats.prefillTokensPerS > 0 && r.stats.decodeTokensPerS > 0);
    // The KV cache is reused for the prompt prefix shared with the previous case.
    let shared = 0;
    if (previousPrompt) while (shared < previousPrompt.length && previousPrompt[shared] === c.prompt_ids[shared]) shared++;
    shared = Math.min(shared, c.prompt_ids.length - 1);
    assert.equal(r.stats.prefilledTokens, c.prompt_ids.length - shared, "only the new part of the prompt is prefilled");
    previousPrompt = c.prompt_ids;
  });
}

const ONCE = fixture.generate[0];

test("aborting mid-generation throws AbortError; generating again gives the right tokens", async () => {
  const r = await page.evaluate(async (prompt) => {
    const controller = new AbortController();
    const pieces = [];
    let caught = null;
    try {
      for await (const piece of window.engine.generate(prompt, { maxTokens: 40, ignoreEos: true, signal: controller.signal })) {
        pieces.push(piece.token);
        if (pieces.length === 3) controller.abort();
      }
    } catch (e) {
      caught = { name: e.name, isAbort: e instanceof window.ferrolm.AbortError };
    }
    const aborted = window.engine.stats;
    const again = await window.collect(prompt, { maxTokens: 6, ignoreEos: true });
    return { pieces, caught, aborted, again, stats: window.engine.stats };
  }, ONCE.prompt);
  assert.deepEqual(r.caught, { name: "AbortError", isAbort: true });
  assert.ok(r.pieces.length >= 3 && r.pieces.length <= 5, `stopped right after the abort (${r.pieces.length} pieces)`);
  assert.deepEqual(r.pieces, ONCE.continuation.slice(0, r.pieces.length));
  assert.equal(r.aborted.finishReason, "abort");
  assert.equal(r.again.error, undefined, r.again.message);
  assert.deepEqual(r.again.tokens, ONCE.continuation.slice(0, 6));
  // Same prompt: everything but its last token came from the KV cache.
  assert.equal(r.stats.prefilledTokens, 1);
});

test("leaving the loop early stops the generation without an error", async () => {
  const r = await page.evaluate(async (prompt) => {
    const first = await window.collect(prompt, { maxTokens: 40, ignoreEos: true }, (n) => n === 2);
    return { first, stats: window.engine.stats };
  }, ONCE.prompt);
  assert.equal(r.first.error, undefined);
  assert.deepEqual(r.first.tokens, ONCE.continuation.slice(0, 2));
  assert.equal(r.stats.finishReason, "abort");
  assert.ok(r.stats.generatedTokens <= 4);
});

test("concurrent generate calls are queued, each gets its own correct continuation", async () => {
  const other = fixture.generate[1];
  const r = await page.evaluate(async ({ a, b }) => {
    const [ra, rb] = await Promise.all([
      window.collect(a, { maxTokens: 4, ignoreEos: true }),
      window.collect(b, { maxTokens: 4, ignoreEos: true }),
    ]);
    return { ra, rb };
  }, { a: ONCE.prompt, b: other.prompt });
  assert.deepEqual(r.ra.tokens, ONCE.continuation.slice(0, 4));
  assert.deepEqual(r.rb.tokens, other.continuation.slice(0, 4));
});

test("sampling with a seed is reproducible; bad options are InvalidRequestError", async () => {
  const r = await page.evaluate(async (prompt) => {
    const opts = { maxTokens: 4, temperature: 0.9, topK: 20, seed: 7, ignoreEos: true };
    const a = await window.collect(prompt, opts);
    const b = await window.collect(prompt, opts);
    const bad = await window.collect(prompt, { temperature: -1 });
    const empty = await window.collect("", {});
    return { a: a.tokens, b: b.tokens, bad, empty };
  }, ONCE.prompt);
  assert.equal(r.a.length, 4);
  assert.deepEqual(r.a, r.b);
  assert.equal(r.bad.error, "InvalidRequestError");
  assert.match(r.bad.message, /temperature/);
  assert.equal(r.empty.error, "InvalidRequestError");
  assert.match(r.empty.message, /empty/);
});

test("speculative decoding (prompt lookup, chat.completions, a draft model) gives the plain tokens", async () => {
  // A zoo model (fast on SwiftShader) with a differently quantised copy of itself as the draft.
  const r = await page.evaluate(async ([prompt, smollm2]) => {
    const zoo = (name) => `/tests/fixtures/zoo/${name}.gguf`;
    const engine = await window.ferrolm.load(zoo("tiny-llama-q4_0"), { draft: zoo("tiny-llama-q8_0"), cache: false });
    const run = async (speculative) => {
      const tokens = [];
        for await (const piece of engine.generate(prompt + " " + prompt, { maxTokens: 16, ignoreEos: true, speculative })) tokens.push(piece.token);
      return { tokens, stats: engine.stats };
    };
    const plain = await run(undefined);
    const lookup = await run("prompt-lookup");
    const draft = await run("draft");
    const messages = [{ role: "user", content: prompt + " " + prompt }];
    const chat = async (speculative) =>
      (await engine.chat.completions.create({ messages, max_tokens: 8, temperature: 0, speculative })).choices[0].message.content;
    const chats = [await chat(undefined), await chat("prompt-lookup")];
    await engine.dispose();
    let mismatch = null;
    try {
      // (Checked on the draft's header, before its weights are fetched.)
      await window.ferrolm.load(zoo("tiny-llama-q4_0"), { draft: smollm2, cache: false });
    } catch (e) {
      mismatch = { name: e.name, typed: e instanceof window.ferrolm.VocabularyMismatchError };
    }
    // The draft as a Blob (a file the user picked), and a value of the wrong kind.
    const blob = await (await fetch(zoo("tiny-llama-q8_0"))).blob();
    const withBlob = await window.ferrolm.load(zoo("tiny-llama-q4_0"), { draft: blob, cache: false });
    const blobDraft = [];
    for await (const piece of withBlob.generate(prompt + " " + prompt, { maxTokens: 16, ignoreEos: true, speculative: "draft" })) blobDraft.push(piece.token);
    const blobStats = withBlob.stats;
    await withBlob.dispose();
    let badDraft = null;
    try {
      await window.ferrolm.load(zoo("tiny-llama-q4_0"), { draft: 42, cache: false });
    } catch (e) {
      badDraft = { name: e.name, message: e.message };
    }
    return { plain, lookup, draft, chats, mismatch, blobDraft, blobStats, badDraft };
  }, [ONCE.prompt, SMOLLM2]);
  assert.equal(r.plain.tokens.length, 16);
  assert.deepEqual(r.lookup.tokens, r.plain.tokens);
  assert.deepEqual(r.draft.tokens, r.plain.tokens);
  assert.equal(r.plain.stats.draftedTokens, 0);
  assert.equal(r.plain.stats.tokensPerTargetStep, 1);
  // (This random-weight model writes tokens its prompt lacks, so prompt lookup rarely proposes;
  // the draft model always makes a first proposal, checked by the same verify step.)
  assert.equal(typeof r.lookup.stats.draftedTokens, "number");
  const { stats } = r.draft;
  assert.ok(stats.draftedTokens > 0 && stats.acceptedTokens <= stats.draftedTokens, JSON.stringify(stats));
  assert.equal(stats.acceptanceRate, stats.acceptedTokens / stats.draftedTokens);
  assert.ok(stats.tokensPerTargetStep >= 1, JSON.stringify(stats));
  assert.equal(r.chats[1], r.chats[0]);
  assert.deepEqual(r.mismatch, { name: "VocabularyMismatchError", typed: true });
  assert.deepEqual(r.blobDraft, r.plain.tokens, "a Blob draft gives the plain tokens too");
  assert.ok(r.blobStats.draftedTokens > 0, JSON.stringify(r.blobStats));
  assert.equal(r.badDraft?.name, "InvalidRequestError");
  assert.match(r.badDraft.message, /draft option must be/);
});

test("memory: the wasm heap stays far below the model size; dispose frees the engine", async () => {
  const r = await page.evaluate(async () => {
    const memory = await window.engine.memory();
    await window.engine.dispose();
    let after = null;
    try {
      await window.engine.tokenize("hi");
    } catch (e) {
      after = e.name;
    }
    return { memory, after };
  });
  assert.ok(r.memory.peakWasmHeapBytes < 64 * MiB, `peak wasm heap ${r.memory.peakWasmHeapBytes}`);
  assert.ok(r.memory.wasmHeapBytes <= r.memory.peakWasmHeapBytes);
  assert.ok(r.memory.gpuBytes > 90e6);
  assert.equal(r.after, "InvalidRequestError");
});
