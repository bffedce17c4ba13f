// The service worker only routes: it opens the offscreen document that runs the engine (Chrome
// ends idle service workers after 30 s, and a service worker cannot start a Worker), and it
// turns the context-menu item into a summary window. The popup streams from the offscreen
// document over a Port, so killing this worker does not stop a summary.

const OFFSCREEN = "offscreen.html";
const MENU_ID = "summarise-selection";
/** @type {Promise<void> | null} */
let creating = null;

async function ensureOffscreen() {
  const contexts = await chrome.runtime.getContexts({ contextTypes: ["OFFSCREEN_DOCUMENT"] });
  if (contexts.length > 0) return;
  if (!creating) {
    creating = chrome.offscreen.createDocument({
      url: OFFSCREEN,
      reasons: ["WORKERS"],
      justification: "runs the language model in a Web Worker (WebGPU) while pages are summarised",
    }).finally(() => { creating = null; });
  }
  await creating;
}

chrome.runtime.onMessage.addListener((message, _sender, reply) => {
  if (message && message.type === "ensure-offscreen") {
    ensureOffscreen().then(() => reply({ ok: true }), (e) => reply({ error: String(e && e.message || e) }));
    return true; // answers asynchronously
  }
  if (message && message.type === "close-offscreen") {
    chrome.offscreen.closeDocument().catch(() => {}).then(() => reply({ ok: true }));
    return true;
  }
  return false;
});

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.create({ id: MENU_ID, title: "Summarise selection", contexts: ["selection"] });
});

chrome.contextMenus.onClicked.addListener(async (info, tab) => {
  if (info.menuItemId !== MENU_ID || !info.selectionText) return;
  await chrome.storage.session.set({
    selection: { text: info.selectionText, title: tab ? tab.title || "" : "", url: tab ? tab.url || "" : "" },
  });
  await chrome.windows.create({ url: "popup.html?selection=1", type: "popup", width: 440, height: 600 });
});
