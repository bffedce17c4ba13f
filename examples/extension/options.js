// The options page: model URL, summary length, and the model cache (the package's `cache` API
// on the extension's origin, where the offscreen document's worker stores the model).
import { cache } from "./pkg/index.js";
import { DEFAULT_MODEL_URL, readSettings, saveSettings } from "./settings.js";

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const MB = (/** @type {number} */ n) => (n / 1e6).toFixed(1);

async function showCache() {
  const models = await cache.list().catch(() => []);
  $("cached").replaceChildren(...models.map((/** @type {any} */ m) => {
    const li = document.createElement("li");
    const url = Array.isArray(m.url) ? m.url[0] : m.url;
    li.textContent = `${url.split("/").pop()}: ${MB(m.storedBytes)} MB${m.complete ? "" : " (partial)"}`;
    li.title = url;
    return li;
  }));
  if (!models.length) $("cached").innerHTML = "<li class=muted>None.</li>";
}

async function show() {
  const s = await readSettings();
  $("model-url").value = s.modelUrl;
  $("length").value = s.length;
  showCache();
}

$("form").addEventListener("submit", async (/** @type {Event} */ e) => {
  e.preventDefault();
  await saveSettings({ modelUrl: $("model-url").value.trim(), length: $("length").value });
  $("status").textContent = "Saved.";
});
$("reset").addEventListener("click", () => { $("model-url").value = DEFAULT_MODEL_URL; });
$("clear").addEventListener("click", async () => {
  // The engine holds the model in GPU memory: close its document so that the next summary loads again.
  await chrome.runtime.sendMessage({ type: "close-offscreen" });
  await cache.clear();
  $("status").textContent = "The cached models were removed.";
  showCache();
});
show();
