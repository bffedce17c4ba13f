// The engine on the calling thread: the wasm module, the call queue, the generate iterator.
// index.js uses it directly with { worker: false }; worker.js runs it inside the Web Worker.

import init, { WasmEngine, wasmMemory } from "./wasm/ferrolm.js";
import { openStore } from "./cache.js";
import { chatNamespace } from "./chat.js";
import { pieceQueue, promptInput } from "./stream.js";
import {
  AbortError, DeviceLostError, EngineCrashedError, GPUDeviceError, InvalidRequestError, WebGPUUnavailableError,
  isWasmTrap, toTypedError, webgpuMissingError,
} from "./errors.js";

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

/** Set once this thread's wasm instance trapped: it stays poisoned (a wasm-bindgen module is
 * instantiated once per thread), so every engine on it fails and no new one loads.
 * @type {EngineCrashedError | null} */
let instanceCrash = null;
/** The engines on this thread, told of a crash. @type {Set<(e: EngineCrashedError) => void>} */
const crashListeners = new Set();
/** How long a plain GPU error waits for `device.lost` (a readback in flight fails first, before
 * the loss is reported: 11-55 ms in Chromium). */
const LOST_GRACE_MS = 500;

/** @param {unknown} error */
function instanceCrashed(error) {
  if (!instanceCrash) {
    const t = toTypedError(error);
    instanceCrash = t instanceof EngineCrashedError ? t : new EngineCrashedError(t.message);
  }
  for (const tell of crashListeners) tell(instanceCrash);
  crashListeners.clear();
}

/** A trap inside an async wasm task (a generation's future) is thrown from a microtask, not
 * into any promise: it reaches the global `error` / `unhandledrejection` events. Only traps
 * whose stack passes through this package's glue are ours. */
function watchForTraps() {
  if (typeof globalThis.addEventListener !== "function") return;
  /** @param {unknown} e */
  const check = (e) => {
    if (isWasmTrap(e) && /ferrolm/.test(String(/** @type {Error} */ (e).stack))) instanceCrashed(e);
  };
  globalThis.addEventListener("error", (event) => check(/** @type {ErrorEvent} */ (event).error));
  globalThis.addEventListener("unhandledrejection", (event) => check(/** @type {PromiseRejectionEvent} */ (event).reason));
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @param {string | URL | undefined} wasmUrl */
function initWasm(wasmUrl) {
  if (!wasmReady) {
    watchForTraps();
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
  "frequencyPenalty", "penaltyWindow", "seed", "stop", "ignoreEos", "speculative",
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
  if (instanceCrash) {
    throw new EngineCrashedError(
      "the wasm instance on this thread crashed earlier and cannot load again: reload the page " +
        "(in the default worker mode a new load() starts a fresh worker)");
  }
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
  /** @type {{ onLost: ((reason: string, message: string) => void) | null }} */
  const port = { onLost: null };
  /** @type {{ reason: string, message: string } | null} */
  let lostWhileLoading = null;
  /** @param {string} reason @param {string} message */
  const onLost = (reason, message) => {
    if (port.onLost) port.onLost(reason, message);
    else lostWhileLoading = { reason, message };
  };
  let inner;
  try {
    inner = await WasmEngine.load(source, engineOptions, progress, signal || undefined, store, onLost);
  } catch (e) {
    const t = toTypedError(e);
    if (t instanceof EngineCrashedError) instanceCrashed(t);
    if (t instanceof GPUDeviceError) await sleep(LOST_GRACE_MS);
    const lost = /** @type {{ reason: string, message: string } | null} */ (lostWhileLoading);
    if (lost && t instanceof GPUDeviceError) throw deviceLostError(lost.reason, lost.message);
    throw t;
  } finally {
    if (store) store.close();
    sampleMemory();
  }
  return new LocalEngine(inner, browserAdapter, port);
}

/** @param {string} reason @param {string} message */
function deviceLostError(reason, message) {
  return new DeviceLostError(`the GPU device was lost (${reason}${message ? `: ${message}` : ""}): load the model again`, reason);
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
  /** dispose() was called: queued and running calls end with AbortError. */
  #closing = false;
  /** Set when the device is lost or the instance crashed: every call rejects with it.
   * @type {DeviceLostError | EngineCrashedError | null} */
  #fatal = null;
  /** Rejects with `#fatal`; a running call races it. @type {Promise<never>} */
  #fatalSignal;
  /** @type {(e: Error) => void} */
  #rejectFatal = () => {};
  /** @type {(info: { reason: string, message: string }) => void} */
  #resolveLost = () => {};
  #onCrash = (/** @type {EngineCrashedError} */ e) => this.#fail(e);

  /** @param {WasmEngine} inner @param {BrowserAdapter} browserAdapter
   * @param {{ onLost: ((reason: string, message: string) => void) | null }} port tells of a lost device */
  constructor(inner, browserAdapter, port) {
    this.#inner = inner;
    this.#fatalSignal = new Promise((_, reject) => { this.#rejectFatal = reject; });
    this.#fatalSignal.catch(() => {});
    /** Resolves with `{ reason, message }` if the GPU device is lost (never after dispose()).
     * @type {Promise<{ reason: string, message: string }>} */
    this.lost = new Promise((resolve) => { this.#resolveLost = resolve; });
    port.onLost = (reason, message) => this.#deviceLost(reason, message);
    crashListeners.add(this.#onCrash);
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

  /** The device is lost: every pending and later call rejects with DeviceLostError.
   * @param {string} reason @param {string} message */
  #deviceLost(reason, message) {
    if (this.#disposed || this.#closing) return;
    this.#resolveLost({ reason, message });
    this.#fail(deviceLostError(reason, message));
  }

  /** @param {DeviceLostError | EngineCrashedError} error */
  #fail(error) {
    if (this.#fatal) return;
    this.#fatal = error;
    crashListeners.delete(this.#onCrash);
    this.#rejectFatal(error);
  }

  /** What a failed call rejects with: the fatal error if there is one; a plain GPU error waits
   * briefly for `device.lost` (a readback in flight fails before the loss is reported).
   * @param {unknown} e */
  async #typed(e) {
    if (this.#fatal) return this.#fatal;
    const t = toTypedError(e);
    if (t instanceof EngineCrashedError) {
      instanceCrashed(t);
      return this.#fatal || t;
    }
    if (t instanceof GPUDeviceError && !this.#disposed) {
      await Promise.race([this.lost, sleep(LOST_GRACE_MS)]);
    }
    return this.#fatal || t;
  }

  /** Runs `task` after every call queued before it (generations never overlap); whatever it
   * throws (a wasm error carrying a typed name) comes out as a typed error. A lost device or a
   * crash rejects the running call at once (its wasm side may never answer).
   * @template T
   * @param {() => T | Promise<T>} task
   * @param {boolean} [isDispose] dispose's own task (runs although the engine is closing)
   * @returns {Promise<T>} */
  #enqueue(task, isDispose = false) {
    if (this.#fatal) return Promise.reject(this.#fatal);
    const run = this.#queue.then(async () => {
      if (this.#fatal) throw this.#fatal;
      if (this.#disposed) throw new InvalidRequestError("the engine was disposed");
      if (this.#closing && !isDispose) throw abortError("the call (the engine is being disposed)");
      try {
        return await Promise.race([task(), this.#fatalSignal]);
      } catch (e) {
        throw await this.#typed(e);
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
      return !stopped && !(signal && signal.aborted) && !this.#closing && !this.#fatal;
    };
    const run = this.#enqueue(async () => {
      if (signal && signal.aborted) throw abortError("generation");
      const stats = await this.#inner.generate(input, rustOptions, onPiece);
      if (this.#closing) {
        this.stats = stats;
        throw abortError("generation (the engine was disposed)");
      }
      return stats;
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

  /** The number of tokens of `text` (as `tokenize` counts them).
   * @param {string} text */
  countTokens(text) {
    return this.#enqueue(() => this.#inner.tokenize(String(text)).length);
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
      gpuBytes: this.#disposed || this.#fatal ? 0 : this.#inner.gpuBytes(),
      allocatedBytes: m.allocatedBytes,
      peakAllocatedBytes: m.peakAllocatedBytes,
    };
  }

  /** Stops the running generation and the queued calls (they reject with AbortError), then
   * frees the GPU memory. Later calls reject with InvalidRequestError; disposing twice is fine.
   * @returns {Promise<void>} */
  dispose() {
    if (!this.#disposing) {
      this.#closing = true;
      crashListeners.delete(this.#onCrash);
      const free = () => {
        this.#disposed = true;
        this.#inner.dispose();
        this.#inner.free();
      };
      this.#disposing = this.#enqueue(free, true).catch(() => {
        // Lost or crashed: nothing runs any more; free what the instance still lets us free.
        this.#disposed = true;
        try { free(); } catch { /* the instance is poisoned */ }
      });
    }
    return this.#disposing;
  }
}
