// Type-checked by package.test.mjs (tsc --noEmit --strict) against pkg/index.d.ts: the README's
// usage compiles, and misuse does not.
import {
  load, cache, AbortError, ModelFormatError, NetworkError, WebGPUUnavailableError, IntegrityError,
  DeviceLostError, EngineCrashedError, GPUDeviceError, VocabularyMismatchError, type DeviceLostInfo, type CachedModel, type Engine, type GenerateStats, type LoadProgress, type MemoryInfo,
} from "../../pkg/index.js";

export async function example(file: File): Promise<string> {
  const controller = new AbortController();
  const engine: Engine = await load("/models/SmolLM2-135M-Instruct.Q4_1.gguf", {
    contextLength: 2048,
    signal: controller.signal,
    onProgress: (p: LoadProgress) => console.log(p.phase, p.done / Math.max(1, p.total)),
  });
  let text = "";
  for await (const piece of engine.generate("Once upon a time", {
    maxTokens: 32, temperature: 0.7, topK: 40, seed: 1, ignoreEos: false, signal: controller.signal,
    topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, stop: ["\n\n"],
  })) {
    text += piece.text;
    const id: number = piece.token;
    void id;
  }
  const stats: GenerateStats | null = engine.stats;
  const rate: number = stats ? stats.decodeTokensPerS + stats.prefillTokensPerS : 0;
  // Speculative decoding: prompt lookup, or a draft model loaded beside the model.
  for await (const piece of engine.generate(text, { maxTokens: 8, speculative: "prompt-lookup" })) text += piece.text;
  const speculated = engine.stats;
  const perStep: number = speculated ? speculated.tokensPerTargetStep * speculated.acceptanceRate + speculated.draftedTokens + speculated.acceptedTokens : 0;
  void perStep;
  try {
    const pair = await load("/models/target.gguf", { draft: "/models/draft.gguf" });
    await pair.chat.completions.create({ messages: [{ role: "user", content: "hi" }], speculative: "draft" });
  } catch (e) {
    if (e instanceof VocabularyMismatchError) console.warn(e.message);
  }
  const ids: number[] = await engine.tokenize(text);
  const count: number = await engine.countTokens(text);
  void count;
  engine.lost.then((info: DeviceLostInfo) => console.warn(info.reason, info.message));
  try {
    await engine.reset();
  } catch (e) {
    if (e instanceof DeviceLostError && e instanceof GPUDeviceError) console.warn(e.reason);
    if (e instanceof EngineCrashedError) console.warn("reload");
  }
  const memory: MemoryInfo = await engine.memory();
  const arch: string = engine.info.architecture;
  const adapter: string = engine.info.adapter.name;
  await engine.dispose();
  const local = await load([file.name + ".part0", file.name + ".part1"], { worker: false });
  await local.dispose();
  await load(file);
  try {
    await load(new Blob([]));
  } catch (e) {
    if (e instanceof ModelFormatError || e instanceof NetworkError || e instanceof AbortError || e instanceof WebGPUUnavailableError) {
      return e.message;
    }
  }
  const stream = await engine.chat.completions.create({
    messages: [{ role: "user", content: "Hi" }], stream: true, max_tokens: 16, stop: ["\n"],
  });
  let reply = "";
  for await (const chunk of stream) {
    reply += chunk.choices[0].delta.content ?? "";
    if (chunk.usage) reply += ` (${chunk.usage.completion_tokens} tokens)`;
  }
  const whole = await engine.chat.completions.create({ messages: [{ role: "user", content: reply }], temperature: 0 });
  const finish: "stop" | "length" | "abort" = whole.choices[0].finish_reason;
  const rendered: { text: string; ids: number[] } = await engine.applyChatTemplate([{ role: "system", content: finish }]);
  // @ts-expect-error: messages are required
  await engine.chat.completions.create({ stream: true });
  // @ts-expect-error: the prompt is a string or token ids
  engine.generate({ prompt: "x" });
  // @ts-expect-error: maxTokens is a number
  engine.generate("x", { maxTokens: "8" });
  // @ts-expect-error: a number is not a model source
  await load(42);
  // @ts-expect-error: speculation is "prompt-lookup" or "draft"
  engine.generate("x", { speculative: "ngram" });
  return `${text} ${rate} ${ids.length} ${memory.peakWasmHeapBytes} ${arch} ${adapter} ${rendered.text}`;
}

/** The model cache's contract (issue 11): load options, progress fields, the `cache` namespace. */
export async function cached(url: string): Promise<string> {
  let source = "";
  const engine = await load(url, {
    cache: true, offline: false, parallel: 4, retries: 3, persist: true,
    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    onProgress: ({ phase, done, total, fromCache, fromNetwork, cache: state }: LoadProgress) => {
      source = `${phase} ${done}/${total}: ${fromCache} cached, ${fromNetwork} fetched (${state})`;
    },
  }).catch((e: unknown) => {
    if (e instanceof IntegrityError) throw e;
    return load(url, { offline: true });
  });
  const limit: number = engine.info.adapter.limits.maxStorageBinding;
  const here: boolean = await cache.has(url);
  const models: CachedModel[] = await cache.list();
  const { bytes, quota } = await cache.usage();
  const removed: boolean = await cache.delete([url, url + ".part1"]);
  await cache.clear();
  // @ts-expect-error: the progress' cache state is one of three forms
  const bad: LoadProgress["cache"] = "maybe";
  // @ts-expect-error: DeviceLimits keys are camelCase
  void engine.info.adapter.limits.max_storage_binding;
  return `${source} ${limit} ${here} ${models.map((m) => `${m.url} ${m.bytes} ${m.complete} ${m.verified} ${m.lastUsed}`)} ${bytes / quota} ${removed} ${bad}`;
}
