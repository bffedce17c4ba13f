// The offscreen document: holds the engine (the package's Web Worker, WebGPU) and answers the
// popup's Port. Protocol (Port "summary"):
//   popup -> { type: "summarize", page: { title, url, text }, modelUrl, maxTokens, contextLength? }
//   here  -> { type: "ready" } on connect, then { type: "load", progress } while the model loads,
//            { type: "loaded", fromCache }, { type: "stage", stage, part, parts },
//            { type: "text", text }, { type: "prompt", tokens, stage }, and last
//            { type: "done", parts } or { type: "error", name, message }.
// A disconnected Port (the popup closed, Stop) aborts its summary.
import { load, cache } from "./pkg/index.js";
import { summarizePage } from "./summarize.js";

/** @type {{ key: string, engine: Promise<any> } | null} */
let current = null;
/** Progress listeners of the load in progress. @type {Set<(p: any) => void>} */
const listeners = new Set();

/** The engine for `modelUrl` (loaded once; another URL or context replaces it). Loads from the
 * cache alone when the model is there, so that a summary works offline.
 * @param {string} modelUrl @param {number | undefined} contextLength */
async function engineFor(modelUrl, contextLength) {
  const key = JSON.stringify([modelUrl, contextLength || 0]);
  if (current && current.key === key) {
    try {
      return { engine: await current.engine, fromCache: true };
    } catch {
      // The last load failed: load again below.
    }
  }
  if (current) {
    const old = current.engine;
    old.then((e) => e.dispose()).catch(() => {});
  }
  const cached = await cache.has(modelUrl).catch(() => false);
  const engine = load(modelUrl, {
    offline: cached,
    ...(contextLength ? { contextLength } : {}),
    onProgress: (p) => { for (const tell of listeners) tell(p); },
  });
  current = { key, engine };
  const e = await engine;
  // A lost device: the next summary loads again.
  e.lost.then(() => { if (current && current.engine === engine) current = null; });
  return { engine: e, fromCache: cached };
}

/** @param {chrome.runtime.Port} port @param {any} request */
async function summarize(port, request) {
  const controller = new AbortController();
  port.onDisconnect.addListener(() => controller.abort());
  const post = (/** @type {any} */ m) => { if (!controller.signal.aborted) port.postMessage(m); };
  const progress = (/** @type {any} */ p) => post({ type: "load", progress: p });
  listeners.add(progress);
  try {
    const { engine, fromCache } = await engineFor(request.modelUrl, request.contextLength);
    listeners.delete(progress);
    post({ type: "loaded", fromCache, contextLength: engine.info.contextLength });
    const { parts } = await summarizePage(engine, request.page, {
      maxTokens: request.maxTokens,
      signal: controller.signal,
      onStage: (s) => post({ type: "stage", ...s }),
      onText: (text) => post({ type: "text", text }),
      onPromptTokens: (tokens, s) => post({ type: "prompt", tokens, ...s }),
    });
    post({ type: "done", parts });
  } catch (e) {
    const error = /** @type {Error} */ (e);
    post({ type: "error", name: error.name || "Error", message: error.message || String(e) });
  } finally {
    listeners.delete(progress);
  }
}

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== "summary") return;
  port.onMessage.addListener((message) => {
    if (message && message.type === "summarize") summarize(port, message);
  });
  port.postMessage({ type: "ready" });
});
