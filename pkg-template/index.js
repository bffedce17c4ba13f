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
import { AbortError, FerrolmError, InvalidRequestError, toTypedError, webgpuMissingError } from "./errors.js";

export {
  FerrolmError, WebGPUUnavailableError, ModelFormatError, UnsupportedModelError, DeviceLimitError,
  NetworkError, AbortError, InvalidRequestError, GPUDeviceError, IntegrityError,
} from "./errors.js";
export { cache } from "./cache.js";

/**
 * Loads a GGUF model and returns an engine. See index.d.ts for the options.
 * @returns {Promise<Engine>}
 */
export async function load(source, options = {}) {
  const { worker = true, onProgress, signal, persist, ...rest } = options;
  const normalized = normalizeSource(source);
  if (persist && globalThis.navigator?.storage?.persist) {
    // Asks the browser not to evict the cache under storage pressure (it may say no).
    await navigator.storage.persist().catch(() => false);
  }
  if (signal && signal.aborted) throw new AbortError("loading was aborted");
  if (!globalThis.navigator || !globalThis.navigator.gpu) throw webgpuMissingError();
  if (!worker || typeof Worker === "undefined") {
    return loadLocal(normalized, { ...rest, onProgress, signal });
  }
  return WorkerEngine.create(normalized, rest, onProgress, signal);
}

/** The same API as the in-thread engine, forwarded to a dedicated worker. */
class WorkerEngine {
  #worker;
  #next = 1;
  #pending = new Map();
  #dead = null;

  constructor(worker) {
    this.#worker = worker;
    this.info = null;
    this.stats = null;
    this.chat = chatNamespace(this);
    worker.onmessage = (event) => {
      const m = event.data;
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
    const fail = (what) => (event) => {
      const detail = event && event.message ? event.message : "the worker could not start or crashed";
      this.#dead = new FerrolmError(`ferrolm worker ${what}: ${detail}`);
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    worker.onerror = fail("error");
    worker.onmessageerror = fail("message error");
  }

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

  /** Sends a request; `signal` forwards an abort to the worker. */
  #call(message, { onProgress, onPiece, signal } = {}) {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#worker.postMessage({ op: "abort", target: id });
      const done = (f) => (v) => {
        if (signal) signal.removeEventListener("abort", onAbort);
        f(v);
      };
      this.#pending.set(id, { resolve: done(resolve), reject: done(reject), onProgress, onPiece });
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
      this.#worker.postMessage({ ...message, id });
      if (signal && signal.aborted) onAbort();
    });
  }

  async *generate(prompt, options = {}) {
    const { signal, ...rest } = options;
    const input = promptInput(prompt);
    if (signal && signal.aborted) throw new AbortError("generation was aborted");
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

  async applyChatTemplate(messages) {
    return (await this.#call({ op: "applyChatTemplate", messages })).rendered;
  }

  async tokenize(text) {
    return (await this.#call({ op: "tokenize", text: String(text) })).ids;
  }

  async detokenize(ids) {
    return (await this.#call({ op: "detokenize", ids: Array.from(ids) })).text;
  }

  async reset() {
    await this.#call({ op: "reset" });
  }

  /** Answered by the worker at once, also while a generation runs (as on the page's thread). */
  async memory() {
    return (await this.#call({ op: "memory" })).memory;
  }

  async dispose() {
    if (this.#dead) return;
    try {
      await this.#call({ op: "dispose" });
    } finally {
      this.#dead = new InvalidRequestError("the engine was disposed");
      this.#worker.terminate();
    }
  }
}
