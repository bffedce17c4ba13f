// The popup: reads the page (extract.js), asks the service worker for the offscreen document,
// and streams the summary from it over a Port. Closing the popup (or Stop) closes the Port,
// which aborts the generation.
//
// Parameters (a contract for tests and other tooling): popup.html?tabId=N summarises tab N
// instead of the active tab; maxTokens=M sets the summary's token budget; model=URL and
// contextLength=C override the options; selection=1 summarises the text the context menu stored.
// #summarize starts, #summary receives the streamed text, #status ends with "done" or "error: …".
import { readTab } from "./extract.js";
import { LENGTHS, readSettings } from "./settings.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  summarize: /** @type {HTMLButtonElement} */ ($("summarize")), stop: /** @type {HTMLButtonElement} */ ($("stop")),
  copy: /** @type {HTMLButtonElement} */ ($("copy")), status: $("status"), summary: $("summary"), page: $("page"),
  progressBox: $("progress-box"), progress: /** @type {HTMLProgressElement} */ ($("progress")), progressText: $("progress-text"),
  partsBox: /** @type {HTMLDetailsElement} */ ($("parts-box")), parts: $("parts"),
};
const params = new URLSearchParams(location.search);
const MB = (/** @type {number} */ n) => (n / 1e6).toFixed(1);
/** @type {chrome.runtime.Port | null} */
let port = null;
/** Ends the summary in progress with an outcome (Stop uses it). @type {((m: any) => void) | null} */
let finish = null;

/** @param {string} text @param {boolean} [error] */
function setStatus(text, error = false) {
  ui.status.textContent = error ? `error: ${text}` : text;
  ui.status.classList.toggle("error", error);
}

/** @param {boolean} running */
function setRunning(running) {
  ui.summarize.disabled = running;
  ui.stop.disabled = !running;
  ui.copy.disabled = running || !ui.summary.textContent;
  document.body.dataset.state = running ? "running" : "idle";
}

/** The page to summarise: the context menu's selection, tab N, or the active tab. */
async function readPage() {
  if (params.get("selection") === "1") {
    const { selection } = await chrome.storage.session.get("selection");
    if (!selection) throw new Error("no selected text was handed over: select text and use the menu again");
    return { ...selection, method: "selection" };
  }
  let tabId = Number(params.get("tabId"));
  if (!params.has("tabId")) {
    const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
    if (!tab || tab.id === undefined) throw new Error("no active tab");
    tabId = tab.id;
  }
  return readTab(tabId);
}

/** Connects to the offscreen document (created by the service worker), retrying while it starts. */
async function connect() {
  const answer = await chrome.runtime.sendMessage({ type: "ensure-offscreen" });
  if (!answer || answer.error) throw new Error(`the engine's document did not start (${answer ? answer.error : "no answer"})`);
  for (let attempt = 0; ; attempt++) {
    const p = chrome.runtime.connect({ name: "summary" });
    const ready = await new Promise((resolve) => {
      p.onMessage.addListener(function first(m) {
        if (m.type === "ready") { p.onMessage.removeListener(first); resolve(true); }
      });
      p.onDisconnect.addListener(() => resolve(false));
    });
    if (ready) return p;
    if (attempt === 20) throw new Error("the engine's document does not answer");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** @param {any} p a LoadProgress of the package */
function showProgress(p) {
  ui.progressBox.hidden = false;
  if (p.phase === "weights" && p.total > 0) {
    ui.progress.value = p.done / p.total;
    const what = p.cache === "hit" ? "Loading the model from the cache" : "Downloading the model (first use)";
    ui.progressText.textContent = `${MB(p.done)} / ${MB(p.total)} MB`;
    setStatus(`${what} …`);
  } else if (p.phase === "shaders") {
    setStatus("Preparing the GPU …");
  }
}

/** @param {{ stage: string, part: number, parts: number }} s */
function stageText(s) {
  if (s.stage === "part") return `Summarising part ${s.part} of ${s.parts} …`;
  if (s.stage === "combine") return s.parts > 1 ? `Combining the partial summaries (group ${s.part} of ${s.parts}) …` : "Combining the partial summaries …";
  return "Writing the summary …";
}

async function summarize() {
  if (port) return;
  setRunning(true);
  ui.summary.textContent = "";
  ui.parts.replaceChildren();
  ui.partsBox.hidden = true;
  const t0 = performance.now();
  /** @type {number[]} */
  const promptTokens = [];
  try {
    setStatus("Reading the page …");
    const page = await readPage();
    /** @type {any} */ (window).lastPage = page; // what was read (tests check the extraction)
    ui.page.textContent = page.title || page.url;
    ui.page.title = `${page.url} (${page.method})`;
    if (!page.text.trim()) throw new Error("this page has no text to summarise");
    const settings = await readSettings();
    setStatus("Starting the model …");
    port = await connect();
    const p = port;
    const outcome = await new Promise((resolve) => {
      finish = resolve;
      /** @type {HTMLElement | null} */
      let partItem = null;
      p.onDisconnect.addListener(() => resolve({ type: "error", message: "the engine's document went away" }));
      p.onMessage.addListener((m) => {
        if (m.type === "load") showProgress(m.progress);
        else if (m.type === "loaded") ui.progressBox.hidden = true;
        else if (m.type === "stage") {
          setStatus(stageText(m));
          if (m.stage === "part") {
            ui.partsBox.hidden = false;
            partItem = document.createElement("li");
            ui.parts.append(partItem);
          } else {
            partItem = null;
          }
          ui.summary.textContent = "";
        } else if (m.type === "text") {
          ui.summary.textContent += m.text;
          if (partItem) partItem.textContent += m.text;
        } else if (m.type === "prompt") {
          promptTokens.push(m.tokens);
          document.body.dataset.promptTokens = JSON.stringify(promptTokens);
        } else if (m.type === "done" || m.type === "error") resolve(m);
      });
      p.postMessage({
        type: "summarize",
        page: { title: page.title, url: page.url, text: page.text },
        modelUrl: params.get("model") || settings.modelUrl,
        maxTokens: Number(params.get("maxTokens")) || LENGTHS[settings.length],
        contextLength: Number(params.get("contextLength")) || undefined,
      });
    });
    if (outcome.type === "stopped") return;
    if (outcome.type === "error") throw new Error(outcome.name && outcome.name !== "Error" ? `${outcome.name}: ${outcome.message}` : outcome.message);
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(outcome.parts > 1 ? `Summary done: ${outcome.parts} parts, ${seconds} s.` : `Summary done in ${seconds} s.`);
  } catch (e) {
    setStatus(e instanceof Error ? e.message : String(e), true);
  } finally {
    if (port) port.disconnect();
    port = null;
    finish = null;
    ui.progressBox.hidden = true;
    setRunning(false);
  }
}

ui.summarize.addEventListener("click", summarize);
ui.stop.addEventListener("click", () => {
  if (!finish) return;
  setStatus("Stopped.");
  finish({ type: "stopped" }); // closing the Port makes the offscreen document abort the generation
});
ui.copy.addEventListener("click", () => navigator.clipboard.writeText(ui.summary.textContent || ""));
document.body.dataset.state = "idle";
