#!/usr/bin/env node
// Measures the browser package in headless Chromium: load time, prefill and decode tokens/s,
// peak wasm heap, on whatever WebGPU adapter Chromium finds (SwiftShader without a GPU).
// Needs pkg/ (scripts/build-wasm.sh) and the npm dev packages (scripts/setup-browser.sh).
//
//   node scripts/bench-browser.mjs [--model /models/X.gguf] [--prompt-tokens 64] [--gen-tokens 16] [--worker false]
//                                  [--kernel VARIANT] [--no-tune] [--kv-type f16|f32] [--prompt TEXT --speculative prompt-lookup]
// With --speculative, a plain run then a speculative one of the same prompt: both decode rates,
// whether the tokens are identical, and the speculation stats.
import { startServer, launchBrowser, openHarness } from "../tests/browser/helpers.mjs";

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const model = opt("model", "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const promptTokens = Number(opt("prompt-tokens", 64));
const genTokens = Number(opt("gen-tokens", 16));
const worker = opt("worker", "true") !== "false";
const loadOptions = { worker, cache: false };
if (opt("kernel")) loadOptions.kernelVariant = opt("kernel");
if (process.argv.includes("--no-tune")) loadOptions.tune = false;
const promptText = opt("prompt");
const speculative = opt("speculative");
if (opt("kv-type")) loadOptions.kvType = opt("kv-type");

const server = await startServer();
const browser = await launchBrowser();
try {
  const page = await openHarness(browser, server.url);
  const result = await page.evaluate(async ({ model, promptTokens, genTokens, loadOptions, promptText, speculative }) => {
    const t0 = performance.now();
    const engine = await window.ferrolm.load(model, loadOptions);
    const loadSeconds = (performance.now() - t0) / 1000;
    const memory = await engine.memory();
    // A deterministic prompt of ordinary tokens (as the CLI's bench).
    const vocab = engine.info.vocabSize;
    const prompt = promptText ?? Array.from({ length: promptTokens }, (_, i) => Math.min(vocab - 1, 1000 + ((i * 7919) % (vocab - 1000))));
    // Warm-up: compiles the prefill pipelines.
    for await (const _ of engine.generate(prompt.slice(0, 8), { maxTokens: 2, ignoreEos: true, speculative }));
    const run = async (speculative) => {
      await engine.reset();
      const tokens = [];
      for await (const piece of engine.generate(prompt, { maxTokens: genTokens, ignoreEos: true, speculative })) tokens.push(piece.token);
      return { tokens, stats: engine.stats };
    };
    const plain = speculative ? await run(undefined) : null;
    const { tokens, stats } = await run(speculative);
    const info = engine.info;
    await engine.dispose();
    return {
      adapter: info.adapter.name, backend: info.adapter.backend, worker: loadOptions.worker, kernels: info.kernels, kvType: info.kvType,
      model: model.split("/").pop(), fileBytes: info.fileBytes, gpuBytes: info.gpuBytes,
      loadSeconds, promptTokens, generatedTokens: stats.generatedTokens,
      prefillTokensPerS: stats.prefillTokensPerS, decodeTokensPerS: stats.decodeTokensPerS,
      peakWasmHeapBytes: memory.peakWasmHeapBytes, peakAllocatedBytes: memory.peakAllocatedBytes,
      ...(plain && {
        speculative, plainDecodeTokensPerS: plain.stats.decodeTokensPerS, speedup: stats.decodeTokensPerS / plain.stats.decodeTokensPerS,
        identicalTokens: JSON.stringify(plain.tokens) === JSON.stringify(tokens), acceptanceRate: stats.acceptanceRate,
        tokensPerTargetStep: stats.tokensPerTargetStep, promptTokens: stats.promptTokens,
      }),
      userAgent: navigator.userAgent,
    };
  }, { model, promptTokens, genTokens, loadOptions, promptText, speculative });
  console.log(JSON.stringify(result, null, 2));
} finally {
  await browser.close();
  server.close();
}
