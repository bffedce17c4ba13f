// The Web Worker side of the proxy in index.js: one engine per worker, driven by messages
// { id, op, ... }; answers { id, type: "progress" | "piece" | "stats" | "result" | "error", ... }.

import { loadLocal } from "./engine.js";
import { __testArmTrap } from "./wasm/ferrolm.js";
import { InvalidRequestError, serializeError } from "./errors.js";

/** @type {import("./engine.js").LocalEngine | null} */
let engine = null;
/** @type {Map<number, AbortController>} */
const controllers = new Map();

// Test support (the browser tests' only way into the worker; no API of the package sends these
// ops): the last GPUDevice this worker opened, so that a test can destroy it as a driver reset
// would, and a wasm trap armed for the next generated piece.
/** @type {{ destroy(): void } | null} */
let lastDevice = null;
const adapterClass = /** @type {any} */ (globalThis).GPUAdapter;
if (adapterClass) {
  const requestDevice = adapterClass.prototype.requestDevice;
  adapterClass.prototype.requestDevice = async function (/** @type {any[]} */ ...args) {
    lastDevice = await requestDevice.apply(this, args);
    return lastDevice;
  };
}

/** @param {Record<string, unknown>} message */
function post(message) {
  // A dedicated worker's postMessage (the DOM lib types `self` as a window).
  /** @type {{ postMessage(m: unknown): void }} */ (/** @type {unknown} */ (self)).postMessage(message);
}

/** The signal of request `id`. @param {number} id */
function signalOf(id) {
  return /** @type {AbortController} */ (controllers.get(id)).signal;
}

/** @param {any} data a request from index.js */
async function handle(data) {
  const { id, op } = data;
  switch (op) {
    case "load": {
      if (engine) throw new InvalidRequestError("this worker already holds an engine");
      const signal = signalOf(id);
      engine = await loadLocal(data.source, {
        ...data.options,
        signal,
        onProgress: (progress) => post({ id, type: "progress", progress }),
      });
      // Tells the page at once, also when no call is running.
      engine.lost.then((info) => post({ id: 0, type: "lost", info }));
      return { info: engine.info };
    }
    case "generate": {
      const signal = signalOf(id);
      const e = need();
      const before = e.stats;
      try {
        for await (const piece of e.generate(data.prompt, { ...data.options, signal })) {
          post({ id, type: "piece", piece });
        }
      } finally {
        // Aborted runs have stats too (finishReason "abort").
        if (e.stats !== before) post({ id, type: "stats", stats: e.stats });
      }
      return {};
    }
    case "applyChatTemplate":
      return { rendered: await need().applyChatTemplate(data.messages) };
    case "tokenize":
      return { ids: await need().tokenize(data.text) };
    case "countTokens":
      return { count: await need().countTokens(data.text) };
    case "__testDestroyDevice":
      if (lastDevice) lastDevice.destroy();
      return {};
    case "__testArmTrap":
      __testArmTrap();
      return {};
    case "detokenize":
      return { text: await need().detokenize(data.ids) };
    case "reset":
      await need().reset();
      return {};
    case "memory":
      return { memory: await need().memory() };
    case "dispose":
      if (engine) await engine.dispose();
      return {};
    default:
      throw new InvalidRequestError(`unknown operation '${op}'`);
  }
}

function need() {
  if (!engine) throw new InvalidRequestError("no model is loaded in this worker");
  return engine;
}

self.onmessage = async (event) => {
  const data = event.data;
  if (data.op === "abort") {
    const controller = controllers.get(data.target);
    if (controller) controller.abort();
    return;
  }
  controllers.set(data.id, new AbortController());
  try {
    const value = await handle(data);
    post({ id: data.id, type: "result", value });
  } catch (e) {
    post({ id: data.id, type: "error", error: serializeError(e) });
  } finally {
    controllers.delete(data.id);
  }
};
