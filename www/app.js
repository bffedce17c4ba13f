// The demo page: load a GGUF model (URL, ?model=, a known model, file picker or drop), chat with
// it (chat.js) or stream a raw completion. ?context=N loads with an N-token context.
import { load, cache, AbortError } from "../pkg/index.js";
import { createChat } from "./chat.js";

const DEFAULT_MODEL = "../models/SmolLM2-135M-Instruct.Q4_1.gguf";
const $ = (id) => document.getElementById(id);
const ui = {
  url: $("model-url"), urlForm: $("url-form"), file: $("model-file"), drop: $("drop"),
  progressBox: $("progress-box"), progress: $("progress"), progressText: $("progress-text"),
  cancelLoad: $("cancel-load"), status: $("status"), info: $("info"),
  prompt: $("prompt"), chatml: $("chatml"), maxTokens: $("max-tokens"), temperature: $("temperature"),
  topK: $("top-k"), generate: $("generate"), stop: $("stop"), output: $("output"), stats: $("stats"),
  memory: $("memory"), source: $("source"), cacheList: $("cache-list"), cacheUsage: $("cache-usage"),
};

let engine = null;
let loading = null; // AbortController of the load in progress
let generating = null; // AbortController of the generation in progress
const chat = createChat({
  engine: () => engine,
  busy: (on) => setState(on ? "generating" : engine ? "ready" : "idle"),
  maxTokens: () => Number($("chat-max-tokens").value) || 256,
  temperature: () => Math.max(0, Number($("chat-temperature").value) || 0),
  fail: (e) => setStatus(`${e.name}: ${e.message}`, true),
});

const MB = (n) => (n / 1e6).toFixed(1);

function setStatus(text, error = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", error);
  document.body.dataset.state = error ? "error" : document.body.dataset.state;
}

function setState(state) {
  document.body.dataset.state = state;
  const busy = state === "loading" || state === "generating";
  ui.generate.disabled = !engine || busy;
  ui.stop.disabled = state !== "generating";
  ui.progressBox.hidden = state !== "loading";
  chat.setEnabled(!!engine && !busy);
}

function webgpuMissing(detail) {
  $("no-webgpu").hidden = false;
  if (detail) $("no-webgpu-detail").textContent = detail;
  for (const el of [ui.url, $("load-url"), ui.file, ui.generate, $("send")]) el.disabled = true;
  setStatus("WebGPU is not available in this browser: the model cannot run here.", true);
  document.body.dataset.state = "no-webgpu";
}

const PHASES = { header: "Reading the model header", weights: "Streaming weights to the GPU", shaders: "Compiling GPU shaders", ready: "Ready" };

/** The last progress report of the load in progress (where the bytes came from). */
let lastProgress = null;

/** Where the model's bytes came from, from the last progress report. */
function describeSource(p) {
  if (!p) return "";
  if (p.cache === "hit") return `From the cache: ${MB(p.fromCache)} MB, no download.`;
  const net = `${MB(p.fromNetwork)} MB from the network`;
  const cached = p.fromCache > 0 ? ` and ${MB(p.fromCache)} MB from the cache (resumed)` : "";
  if (p.cache === "writing") return `Downloaded: ${net}${cached}, now in the cache.`;
  return `Downloaded: ${net}${cached}; not cached (${p.cache.replace(/^skipped: /, "")}).`;
}

/** Lists the cached models, each with a delete button. */
async function showCache() {
  try {
    const [models, usage] = await Promise.all([cache.list(), cache.usage()]);
    ui.cacheList.replaceChildren(...models.map((m) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      const urls = Array.isArray(m.url) ? m.url : [m.url];
      name.textContent = `${urls[0].split("/").pop()}${urls.length > 1 ? ` (+${urls.length - 1} parts)` : ""}`;
      name.title = urls.join("\n");
      const size = document.createElement("span");
      size.className = "muted size";
      size.textContent = m.complete ? `${MB(m.bytes)} MB` : `${MB(m.storedBytes)} of ${MB(m.bytes)} MB (partial)`;
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "Delete";
      del.addEventListener("click", async () => {
        await cache.delete(m.url);
        showCache();
      });
      li.append(name, size, del);
      return li;
    }));
    if (!models.length) ui.cacheList.innerHTML = '<li class="muted">None yet.</li>';
    ui.cacheUsage.textContent = `${MB(usage.bytes)} MB used of ${MB(usage.quota)} MB`;
  } catch (e) {
    ui.cacheUsage.textContent = `cache unavailable (${e.message})`;
  }
  showModelCached();
}

/** Whether the model named in the URL field is in the cache. */
async function showModelCached() {
  const source = modelFromField();
  const el = $("model-cached");
  if (!source) { el.textContent = ""; return; }
  try {
    el.textContent = (await cache.has(source)) ? "In the cache: loads without a download." : "Not cached yet: the first load downloads it.";
  } catch {
    el.textContent = "";
  }
}

function onProgress(p) {
  lastProgress = p;
  if (p.phase === "weights" && p.total > 0) {
    ui.progress.value = p.done / p.total;
    ui.progressText.textContent = `${PHASES.weights}: ${MB(p.done)} / ${MB(p.total)} MB`;
  } else {
    if (p.phase === "header") ui.progress.removeAttribute("value");
    if (p.phase === "shaders" || p.phase === "ready") ui.progress.value = 1;
    ui.progressText.textContent = PHASES[p.phase] || p.phase;
  }
}

async function loadModel(source, label) {
  if (loading) loading.abort();
  if (generating) generating.abort();
  const controller = new AbortController();
  loading = controller;
  if (engine) {
    const old = engine;
    engine = null;
    old.dispose().catch(() => {});
  }
  ui.output.textContent = "";
  ui.stats.textContent = "";
  ui.info.textContent = "";
  ui.source.textContent = "";
  lastProgress = null;
  chat.clear();
  setState("loading");
  setStatus(`Loading ${label} …`);
  const t0 = performance.now();
  try {
    const contextLength = Number(new URLSearchParams(location.search).get("context")) || undefined;
    const e = await load(source, { onProgress, signal: controller.signal, ...(contextLength ? { contextLength } : {}) });
    if (loading !== controller) { e.dispose(); return; }
    engine = e;
    const seconds = (performance.now() - t0) / 1000;
    const i = engine.info;
    // Every model has a chat template: its own, or the fallback for its architecture.
    ui.chatml.disabled = false;
    ui.chatml.checked = true;
    const quant = Object.entries(i.quantTypes).map(([t, n]) => `${t}×${n}`).join(" ");
    ui.info.textContent = `${i.architecture}, ${i.layers} layers, d=${i.embeddingLength}, vocab ${i.vocabSize}, context ${i.contextLength}; ` +
      `${quant}; ${MB(i.fileBytes)} MB file, ${MB(i.gpuBytes)} MB on the GPU; adapter: ${i.adapter.name}`;
    setStatus(`Ready: ${label} loaded in ${seconds.toFixed(1)} s.`);
    ui.source.textContent = describeSource(lastProgress);
    setState("ready");
    showMemory();
    showCache();
  } catch (e) {
    if (loading !== controller) return;
    engine = null;
    setState("idle");
    if (e instanceof AbortError) setStatus("Loading cancelled.");
    else if (e.name === "WebGPUUnavailableError") webgpuMissing(e.message);
    else setStatus(`${e.name}: ${e.message}`, true);
    showCache();
  } finally {
    if (loading === controller) loading = null;
  }
}

async function showMemory() {
  if (!engine) return;
  try {
    const m = await engine.memory();
    ui.memory.textContent = `wasm heap ${MB(m.wasmHeapBytes)} MB (peak ${MB(m.peakWasmHeapBytes)} MB), GPU ${MB(m.gpuBytes)} MB`;
  } catch { /* disposed */ }
}

/** The prompt as typed, or as one user turn rendered with the model's chat template (token ids). */
async function promptInput() {
  const text = ui.prompt.value;
  if (!ui.chatml.checked) return text;
  return (await engine.applyChatTemplate([{ role: "user", content: text }])).ids;
}

async function generate() {
  if (!engine || generating) return;
  const controller = new AbortController();
  generating = controller;
  ui.output.textContent = "";
  ui.stats.textContent = "";
  setState("generating");
  setStatus("Generating …");
  let count = 0;
  const t0 = performance.now();
  let stopped = false;
  try {
    const options = {
      maxTokens: Number(ui.maxTokens.value) || 128,
      temperature: Math.max(0, Number(ui.temperature.value) || 0),
      topK: Number(ui.topK.value) || 40,
      seed: Math.floor(Math.random() * 2 ** 32),
      signal: controller.signal,
    };
    for await (const piece of engine.generate(await promptInput(), options)) {
      ui.output.textContent += piece.text;
      count++;
      const s = (performance.now() - t0) / 1000;
      ui.stats.textContent = `${count} tokens, ${(count / s).toFixed(2)} tokens/s`;
    }
  } catch (e) {
    if (e instanceof AbortError) stopped = true;
    else setStatus(`${e.name}: ${e.message}`, true);
  } finally {
    generating = null;
  }
  const st = engine && engine.stats;
  if (st) {
    ui.stats.textContent = `${st.generatedTokens} tokens · prompt ${st.promptTokens} tokens at ${st.prefillTokensPerS.toFixed(1)} tokens/s · ` +
      `decode ${st.decodeTokensPerS.toFixed(2)} tokens/s · ${stopped ? "stopped" : st.finishReason === "stop" ? "end of text" : "length limit"}`;
  }
  if (document.body.dataset.state !== "error") setStatus(stopped ? "Stopped." : "Done.");
  setState(engine ? "ready" : "idle");
  showMemory();
}

function modelFromField() {
  // Several URLs separated by spaces: raw byte chunks of one file, in order.
  const urls = ui.url.value.trim().split(/\s+/).filter(Boolean);
  return urls.length > 1 ? urls : urls[0];
}

ui.urlForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const source = modelFromField();
  if (source) loadModel(source, Array.isArray(source) ? `${source.length} parts` : source.split("/").pop());
});
ui.file.addEventListener("change", () => {
  const f = ui.file.files[0];
  if (f) loadModel(f, f.name);
});
ui.drop.addEventListener("dragover", (e) => { e.preventDefault(); ui.drop.classList.add("over"); });
ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
ui.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  ui.drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) loadModel(f, f.name);
});
ui.url.addEventListener("input", showModelCached);
ui.cancelLoad.addEventListener("click", () => loading && loading.abort());
ui.generate.addEventListener("click", generate);
ui.stop.addEventListener("click", () => generating && generating.abort());
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate();
});

// Start: the model from ?model= (or the default) is loaded right away.
const params = new URLSearchParams(location.search);
ui.url.value = params.get("model") || DEFAULT_MODEL;
showCache();
if (!navigator.gpu) {
  webgpuMissing();
} else {
  setState("idle");
  ui.urlForm.requestSubmit();
}
