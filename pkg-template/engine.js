// The engine on the calling thread: the wasm module, the call queue, the generate iterator.
// index.js uses it directly with { worker: false }; worker.js runs it inside the Web Worker.

import init, { WasmEngine, wasmMemory } from "./wasm/ferrolm.js";
import { openStore } from "./cache.js";
import { chatNamespace } from "./chat.js";
import { pieceQueue, promptInput } from "./stream.js";
import { AbortError, InvalidRequestError, WebGPUUnavailableError, toTypedError, webgpuMissingError } from "./errors.js";

/**
 * @typedef {import("./index.js").Engine} Engine
 * @typedef {import("./index.js").EngineInfo} EngineInfo
 * @typedef {import("./index.js").GenerateOptions} GenerateOptions
 * @typedef {import("./index.js").GenerateStats} GenerateStats
 * @typedef {import("./index.js").LoadOptions} LoadOptions
 * @typedef {import("./index.js").LoadProgress} LoadProgress
 * @typedef {import("./index.js").MemoryInfo} MemoryInfo
 * @typedef {import("./index.js").ChatMessage} ChatMessage
 * @typedef {import("./index.js").Piece} Piece
 * @typedef {EngineInfo["adapter"]["browser"]} BrowserAdapter
 */

/** @type {Promise<unknown> | null} */
let wasmReady = null;
let peakWasmHeapBytes = 0;

/** @param {string | URL | undefined} wasmUrl */
function initWasm(wasmUrl) {
  if (!wasmReady) {
    wasmReady = init(wasmUrl ? { module_or_path: wasmUrl } : undefined).catch((e) => {
      wasmReady = null;
      throw toTypedError(e);
    });
  }
  return wasmReady;
}

/** Linear-memory size now; the peak is the largest size seen (memory never shrinks). */
function sampleMemory() {
  const m = wasmMemory();
  peakWasmHeapBytes = Math.max(peakWasmHeapBytes, m.wasmHeapBytes);
  return m;
}

/** The `generate` options handed to the Rust engine. */
const GENERATE_OPTIONS = [
  "maxTokens", "temperature", "topK", "topP", "minP", "repetitionPenalty", "presencePenalty",
  "frequencyPenalty", "penaltyWindow", "seed", "stop", "ignoreEos",
];

/** @param {string} what */
function abortError(what) {
  return new AbortError(`${what} was aborted`);
}

/** Checks that WebGPU is there and returns what the browser says about the adapter.
 * @returns {Promise<BrowserAdapter>} */
export async function adapterInfo() {
  const gpu = globalThis.navigator && globalThis.navigator.gpu;
  if (!gpu) throw webgpuMissingError();
  let adapter = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    throw new WebGPUUnavailableError(`requesting a WebGPU adapter failed: ${e instanceof Error ? e.message : e}`);
  }
  if (!adapter) {
    throw new WebGPUUnavailableError(
      "WebGPU is present but no adapter is available (GPU blocklisted or disabled): check chrome://gpu");
  }
  const i = adapter.info || {};
  return {
    vendor: i.vendor || "", architecture: i.architecture || "", device: i.device || "",
    description: i.description || "", isFallbackAdapter: !!i.isFallbackAdapter,
  };
}

/** Loads a model on this thread. The options the wrapper does not handle itself go to the Rust
 * side as they are (it parses them all in one place).
 * @param {string | string[] | Blob} source absolute URL, array of URLs, File or Blob
 * @param {LoadOptions} options
 * @returns {Promise<LocalEngine>} */
export async function loadLocal(source, options = {}) {
  // eslint-disable-next-line no-unused-vars
  const { onProgress, signal, wasmUrl, cache = true, persist, worker, ...engineOptions } = options;
  if (signal && signal.aborted) throw abortError("loading");
  if (engineOptions.offline && cache === false) {
    throw new InvalidRequestError("offline: true loads from the cache: it cannot be combined with cache: false");
  }
  const browserAdapter = await adapterInfo();
  await initWasm(wasmUrl);
  sampleMemory();
  const cached = cache !== false && (typeof source === "string" || Array.isArray(source));
  const store = cached ? await openStore(typeof source === "string" ? [source] : source) : undefined;
  /** @param {LoadProgress} p */
  const progress = (p) => {
    sampleMemory();
    if (onProgress) {
      try { onProgress(p); } catch (e) { console.error("ferrolm: onProgress threw", e); }
    }
  };
  let inner;
  try {
    inner = await WasmEngine.load(source, engineOptions, progress, signal || undefined, store);
  } catch (e) {
    throw toTypedError(e);
  } finally {
    if (store) store.close();
    sampleMemory();
  }
  return new LocalEngine(inner, browserAdapter);
}

/** The engine on this thread.
 * @implements {Engine} */
export class LocalEngine {
  /** @type {WasmEngine} */
  #inner;
  /** @type {Promise<unknown>} */
  #queue = Promise.resolve();
  #disposed = false;
  /** @type {Promise<void> | null} */
  #disposing = null;

  /** @param {WasmEngine} inner @param {BrowserAdapter} browserAdapter */
  constructor(inner, browserAdapter) {
    this.#inner = inner;
    const info = inner.info;
    info.adapter.browser = browserAdapter;
    if (!info.adapter.name) {
      const b = browserAdapter;
      info.adapter.name = b.description || [b.vendor, b.architecture, b.device].filter(Boolean).join(" ") || "WebGPU adapter";
    }
    /** What was loaded and where it runs.
     * @type {EngineInfo} */
    this.info = info;
    /** Figures of the last generation (null before the first).
     * @type {GenerateStats | null} */
    this.stats = null;
    /** OpenAI-style `chat.completions.create`. */
    this.chat = chatNamespace(this);
  }

  /** Runs `task` after every call queued before it (generations never overlap); whatever it
   * throws (a wasm error carrying a typed name) comes out as a typed error.
   * @template T
   * @param {() => T | Promise<T>} task
   * @returns {Promise<T>} */
  #enqueue(task) {
    const run = this.#queue.then(async () => {
      if (this.#disposed) throw new InvalidRequestError("the engine was disposed");
      try {
        return await task();
      } catch (e) {
        throw toTypedError(e);
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Streams `{ text, token }` pieces; see index.d.ts for the options.
   * @param {string | number[] | Uint32Array} prompt
   * @param {GenerateOptions} options
   * @returns {AsyncGenerator<Piece, void, undefined>} */
  async *generate(prompt, options = {}) {
    const { signal } = options;
    /** @type {Record<string, unknown>} */
    const rustOptions = {};
    for (const k of GENERATE_OPTIONS) {
      const value = /** @type {Record<string, unknown>} */ (options)[k];
      if (value !== undefined) rustOptions[k] = value;
    }
    const input = promptInput(prompt);
    /** @type {ReturnType<typeof pieceQueue<Piece>>} */
    const queue = pieceQueue();
    let stopped = false;
    /** @param {string} text @param {number} token */
    const onPiece = (text, token) => {
      queue.push({ text, token });
      return !stopped && !(signal && signal.aborted);
    };
    const run = this.#enqueue(() => {
      if (signal && signal.aborted) throw abortError("generation");
      return this.#inner.generate(input, rustOptions, onPiece);
    });
    run.then(
      (stats) => { this.stats = stats; queue.end(); },
      (e) => queue.end(e),
    );
    try {
      yield* queue.drain();
      if (signal && signal.aborted) throw abortError("generation");
    } finally {
      // A consumer that breaks out of the loop stops the generation; wait for it to end so
      // that `stats` is up to date and the next call starts on a quiet engine.
      stopped = true;
      await run.catch(() => {});
    }
  }

  /** Token ids of `text` (special tokens such as <|im_start|> parsed, no BOS).
   * @param {string} text */
  tokenize(text) {
    return this.#enqueue(() => Array.from(this.#inner.tokenize(String(text))));
  }

  /** Text of token ids.
   * @param {number[] | Uint32Array} ids */
  detokenize(ids) {
    return this.#enqueue(() => this.#inner.detokenize(Uint32Array.from(ids)));
  }

  /** Renders chat messages with the model's template: `{ text, ids }`.
   * @param {ChatMessage[]} messages
   * @returns {Promise<{ text: string, ids: number[] }>} */
  applyChatTemplate(messages) {
    return this.#enqueue(() => this.#inner.applyChatTemplate(messages));
  }

  /** Forgets the KV cache. */
  reset() {
    return this.#enqueue(() => this.#inner.reset());
  }

  /** `{ wasmHeapBytes, peakWasmHeapBytes, gpuBytes, allocatedBytes, peakAllocatedBytes }`,
   * answered at once (not queued behind a generation), as the worker proxy does.
   * @returns {Promise<MemoryInfo>} */
  async memory() {
    const m = sampleMemory();
    return {
      wasmHeapBytes: m.wasmHeapBytes,
      peakWasmHeapBytes,
      gpuBytes: this.#disposed ? 0 : this.#inner.gpuBytes(),
      allocatedBytes: m.allocatedBytes,
      peakAllocatedBytes: m.peakAllocatedBytes,
    };
  }

  /** Frees the GPU memory after queued calls finish. Later calls reject; disposing twice is fine.
   * @returns {Promise<void>} */
  dispose() {
    if (!this.#disposing) {
      this.#disposing = this.#enqueue(() => {
        this.#disposed = true;
        this.#inner.dispose();
        this.#inner.free();
      });
    }
    return this.#disposing;
  }
}
