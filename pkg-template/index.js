// ferrolm: run GGUF language models in the browser on WebGPU.
//
//   import { load } from "ferrolm";
//   const engine = await load("https://example.com/model.gguf", { onProgress: console.log });
//   for await (const piece of engine.generate("Once upon a time", { maxTokens: 64 })) out += piece.text;
//
// By default the engine runs in a Web Worker and this module holds a proxy with the same API;
// { worker: false } runs it on the calling thread.

import { chatNamespace } from "./chat.js";
import { loadLocal } from "./engine.js";
import { normalizeSource } from "./source.js";
import { pieceQueue, promptInput } from "./stream.js";
import {
  AbortError, DeviceLostError, EngineCrashedError, InvalidRequestError, toTypedError, webgpuMissingError,
} from "./errors.js";

export {
  FerrolmError, WebGPUUnavailableError, ModelFormatError, UnsupportedModelError, DeviceLimitError,
  NetworkError, AbortError, InvalidRequestError, GPUDeviceError, IntegrityError, DeviceLostError,
  EngineCrashedError, VocabularyMismatchError,
} from "./errors.js";
export { cache } from "./cache.js";

/**
 * @typedef {import("./index.js").Engine} Engine
 * @typedef {import("./index.js").EngineInfo} EngineInfo
 * @typedef {import("./index.js").GenerateOptions} GenerateOptions
 * @typedef {import("./index.js").GenerateStats} GenerateStats
 * @typedef {import("./index.js").LoadOptions} LoadOptions
 * @typedef {import("./index.js").LoadProgress} LoadProgress
 * @typedef {import("./index.js").MemoryInfo} MemoryInfo
 * @typedef {import("./index.js").ChatMessage} ChatMessage
 * @typedef {import("./index.js").ModelSource} ModelSource
 * @typedef {import("./index.js").Piece} Piece
 * @typedef {{ resolve(v: any): void, reject(e: unknown): void, onProgress?: (p: LoadProgress) => void,
 *   onPiece?: (p: Piece) => void }} Pending
 */

/**
 * Loads a GGUF model and returns an engine. See index.d.ts for the options.
 * @param {ModelSource} source
 * @param {LoadOptions} options
 * @returns {Promise<Engine>}
 */
export async function load(source, options = {}) {
  const { worker = true, onProgress, signal, persist, ...rest } = options;
  // The autotuned kernel choices of earlier loads on this origin (the worker has no localStorage).
  if (rest.tune !== false && rest.kernelCache === undefined) rest.kernelCache = readKernelCache();
  const normalized = normalizeSource(source);
  if (persist && globalThis.navigator?.storage) {
    // Asks the browser not to evict the cache under storage pressure (it may say no).
    await navigator.storage.persist().catch(() => false);
  }
  if (signal && signal.aborted) throw new AbortError("loading was aborted");
  if (!globalThis.navigator || !globalThis.navigator.gpu) throw webgpuMissingError();
  const engine = !worker || typeof Worker === "undefined"
    ? await loadLocal(normalized, { ...rest, onProgress, signal })
    : await WorkerEngine.create(normalized, rest, onProgress, signal);
  saveKernelCache(engine.info);
  return engine;
}

/** localStorage key of the autotuner's choices: `{ adapter key: { shape: variant } }`. */
const KERNEL_CACHE_KEY = "ferrolm.kernels";

/** The cached kernel choices of this origin ({} where localStorage is missing or unreadable). */
function readKernelCache() {
  try {
    const text = globalThis.localStorage?.getItem(KERNEL_CACHE_KEY);
    const parsed = text ? JSON.parse(text) : {};
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    return {};
  }
}

/** Adds the choices a load timed to the cache (best effort: storage may be full or denied).
 * @param {EngineInfo} info */
function saveKernelCache(info) {
  const kernels = info && info.kernels;
  if (!kernels || !kernels.tune || !kernels.tune.timed) return;
  try {
    const all = readKernelCache();
    all[kernels.adapterKey] = { ...(all[kernels.adapterKey] || {}), ...kernels.choices };
    globalThis.localStorage?.setItem(KERNEL_CACHE_KEY, JSON.stringify(all));
  } catch {
    // No storage: the next load tunes again.
  }
}

/** The same API as the in-thread engine, forwarded to a dedicated worker.
 * @implements {Engine} */
class WorkerEngine {
  /** @type {Worker} */
  #worker;
  #next = 1;
  /** @type {Map<number, Pending>} */
  #pending = new Map();
  /** @type {Error | null} */
  #dead = null;
  /** @type {(info: { reason: string, message: string }) => void} */
  #resolveLost = () => {};

  /** @param {Worker} worker */
  constructor(worker) {
    this.#worker = worker;
    /** Resolves with `{ reason, message }` if the GPU device is lost (never after dispose()).
     * @type {Promise<{ reason: string, message: string }>} */
    this.lost = new Promise((resolve) => { this.#resolveLost = resolve; });
    /** What was loaded and where it runs (set once loaded).
     * @type {EngineInfo} */
    this.info = /** @type {any} */ (null);
    /** @type {GenerateStats | null} */
    this.stats = null;
    this.chat = chatNamespace(this);
    worker.onmessage = (event) => {
      const m = event.data;
      if (m.type === "lost") {
        this.#resolveLost(m.info);
        this.#fail(new DeviceLostError(
          `the GPU device was lost (${m.info.reason}${m.info.message ? `: ${m.info.message}` : ""}): load the model again`,
          m.info.reason));
        return;
      }
      if (m.type === "error" && m.error.name === "EngineCrashedError") {
        this.#fail(toTypedError(m.error));
        return;
      }
      const p = this.#pending.get(m.id);
      if (!p) return;
      if (m.type === "progress") p.onProgress && p.onProgress(m.progress);
      else if (m.type === "piece") p.onPiece && p.onPiece(m.piece);
      else if (m.type === "stats") this.stats = m.stats;
      else {
        this.#pending.delete(m.id);
        if (m.type === "result") p.resolve(m.value);
        else p.reject(toTypedError(m.error));
      }
    };
    /** @param {string} what */
    const fail = (what) => (/** @type {Event} */ event) => {
      const detail = event instanceof ErrorEvent && event.message ? event.message : "the worker could not start or crashed";
      this.#fail(new EngineCrashedError(`ferrolm worker ${what}: ${detail}`));
    };
    worker.onerror = fail("error");
    worker.onmessageerror = fail("message error");
  }

  /** The engine is gone (device lost, worker crashed): every pending and later call rejects
   * with `error`; a crashed worker is ended (a new load() starts a fresh one).
   * @param {Error} error */
  #fail(error) {
    if (this.#dead) return;
    this.#dead = error;
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    if (error instanceof EngineCrashedError) this.#worker.terminate();
  }

  /**
   * @param {string | string[] | Blob} source
   * @param {Omit<LoadOptions, "onProgress" | "signal">} options
   * @param {((p: LoadProgress) => void) | undefined} onProgress
   * @param {AbortSignal | undefined} signal
   */
  static async create(source, options, onProgress, signal) {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "ferrolm" });
    const engine = new WorkerEngine(worker);
    try {
      const { info } = await engine.#call({ op: "load", source, options }, { onProgress, signal });
      engine.info = info;
      return engine;
    } catch (e) {
      worker.terminate();
      throw e;
    }
  }

  /** Sends a request; `signal` forwards an abort to the worker.
   * @param {Record<string, unknown>} message
   * @param {{ onProgress?: Pending["onProgress"], onPiece?: Pending["onPiece"], signal?: AbortSignal }} [handlers]
   * @returns {Promise<any>} */
  #call(message, { onProgress, onPiece, signal } = {}) {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#worker.postMessage({ op: "abort", target: id });
      /** @param {(v: any) => void} f */
      const done = (f) => (/** @type {any} */ v) => {
        if (signal) signal.removeEventListener("abort", onAbort);
        f(v);
      };
      this.#pending.set(id, { resolve: done(resolve), reject: done(reject), onProgress, onPiece });
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
      this.#worker.postMessage({ ...message, id });
      if (signal && signal.aborted) onAbort();
    });
  }

  /**
   * @param {string | number[] | Uint32Array} prompt
   * @param {GenerateOptions} options
   * @returns {AsyncGenerator<Piece, void, undefined>}
   */
  async *generate(prompt, options = {}) {
    const { signal, ...rest } = options;
    const input = promptInput(prompt);
    if (signal && signal.aborted) throw new AbortError("generation was aborted");
    /** @type {ReturnType<typeof pieceQueue<Piece>>} */
    const queue = pieceQueue();
    // Our own controller: aborted by the caller's signal, or when the loop is left early.
    const controller = new AbortController();
    const forward = () => controller.abort();
    if (signal) signal.addEventListener("abort", forward, { once: true });
    const run = this.#call(
      { op: "generate", prompt: input, options: rest },
      { onPiece: (piece) => queue.push(piece), signal: controller.signal },
    );
    run.then(() => queue.end(), (e) => queue.end(e));
    try {
      yield* queue.drain();
    } finally {
      if (signal) signal.removeEventListener("abort", forward);
      controller.abort();
      await run.catch(() => {});
    }
  }

  /** @param {ChatMessage[]} messages @returns {Promise<{ text: string, ids: number[] }>} */
  async applyChatTemplate(messages) {
    return (await this.#call({ op: "applyChatTemplate", messages })).rendered;
  }

  /** @param {string} text @returns {Promise<number[]>} */
  async tokenize(text) {
    return (await this.#call({ op: "tokenize", text: String(text) })).ids;
  }

  /** @param {string} text @returns {Promise<number>} */
  async countTokens(text) {
    return (await this.#call({ op: "countTokens", text: String(text) })).count;
  }

  /** @param {number[] | Uint32Array} ids @returns {Promise<string>} */
  async detokenize(ids) {
    return (await this.#call({ op: "detokenize", ids: Array.from(ids) })).text;
  }

  async reset() {
    await this.#call({ op: "reset" });
  }

  /** Answered by the worker at once, also while a generation runs (as on the page's thread).
   * @returns {Promise<MemoryInfo>} */
  async memory() {
    return (await this.#call({ op: "memory" })).memory;
  }

  /** The worker stops the running generation and the queued calls (AbortError), frees the
   * GPU memory, and is ended. */
  async dispose() {
    if (this.#dead) {
      this.#worker.terminate();
      return;
    }
    try {
      await this.#call({ op: "dispose" });
    } finally {
      const aborted = new AbortError("the call was aborted: the engine was disposed");
      for (const p of this.#pending.values()) p.reject(aborted);
      this.#pending.clear();
      this.#dead = new InvalidRequestError("the engine was disposed");
      this.#worker.terminate();
    }
  }
}
