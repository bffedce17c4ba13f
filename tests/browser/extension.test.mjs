// The MV3 extension (examples/extension, built by scripts/build-extension.sh --test) loaded
// unpacked into headless Chromium: the popup opened as a tab (`popup.html?tabId=N&maxTokens=M`)
// summarises a local article page served on 127.0.0.1. A tiny zoo model (512-token context)
// keeps it fast; its greedy output is noise, so the checks are on the pipeline: the extracted
// text, streaming, the summary equal to the package's own map-reduce on a plain page, repeatable
// greedy runs, chunking budgeted by the tokenizer, a killed service worker, the model cache with
// the server stopped, an empty page, and the CSP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, launchBrowser, openHarness, root, CHROMIUM, CHROMIUM_ARGS } from "./helpers.mjs";
import { packChunks, paragraphs } from "../../examples/extension/summarize.js";

const EXT = path.join(root, "dist/extension");
const TINY = "/tests/fixtures/zoo/tiny-qwen3-q4_k_m.gguf";
const CONTEXT = 512; // the tiny model's training context (the engine's default here)

const ARTICLE_PARAGRAPHS = [
  "The north coast has seven lighthouses; the oldest was built in 1821.",
  "Keepers lived in the towers until 1987. Volunteers now open two of them in summer.",
];
const LONG_PARAGRAPHS = Array.from({ length: 9 }, (_, i) =>
  `Section ${i + 1}. The harbour authority counted ${120 + i * 7} boats this season, ` +
  `and the ferry to island ${i + 1} ran ${3 + i} times a day until the autumn storms began.`);

/** A page with navigation and footer around an <article> (Readability keeps only the article). */
function articlePage(title, paragraphs) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>
<nav><a href="/">Home</a> <a href="/shop">Shop: buy our mugs</a> <a href="/news">News</a></nav>
<article><h1>${title}</h1>${paragraphs.map((p) => `<p>${p}</p>`).join("\n")}</article>
<footer>Cookie settings · Subscribe to our newsletter · Copyright 2026</footer></body></html>`;
}

let server, context, extensionId, pagesDir, profile;
const tabs = {}; // page name -> tab id
let firstSummary = null;

before(async () => {
  execFileSync(path.join(root, "scripts/build-extension.sh"), ["--test"], { stdio: "inherit" });
  pagesDir = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-ext-pages-"));
  fs.writeFileSync(path.join(pagesDir, "article.html"), articlePage("Lighthouses of the north coast", ARTICLE_PARAGRAPHS));
  fs.writeFileSync(path.join(pagesDir, "long.html"), articlePage("The harbour year", LONG_PARAGRAPHS));
  fs.writeFileSync(path.join(pagesDir, "empty.html"), "<!doctype html><title></title><body><div></div></body>");
  server = await startServer(["--test-hooks", "--mount", `/pages/=${pagesDir}`, "--mount", `/ext/=${EXT}`]);
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-ext-profile-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true,
    args: [...CHROMIUM_ARGS, `--disable-extensions-except=${EXT}`, `--load-extension=${EXT}`],
  });
  const sw = context.serviceWorkers()[0] || await context.waitForEvent("serviceworker");
  extensionId = new URL(sw.url()).host;
  for (const name of ["article", "long", "empty"]) {
    const page = await context.newPage();
    await page.goto(`${server.url}/pages/${name}.html`);
  }
  const all = await sw.evaluate(() => chrome.tabs.query({}));
  for (const name of ["article", "long", "empty"]) {
    tabs[name] = all.find((t) => (t.url || "").endsWith(`/pages/${name}.html`)).id;
  }
});
after(async () => {
  await context?.close();
  server?.close();
  for (const dir of [pagesDir, profile]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Opens the popup as a tab for `tab`; `recordStatus` keeps every #status text, `lengths` every
 * #summary length. */
async function openPopup(tab, { maxTokens = 32, model = TINY } = {}) {
  const popup = await context.newPage();
  popup.statuses = [];
  popup.lengths = [];
  await popup.exposeFunction("recordStatus", (s) => popup.statuses.push(s));
  await popup.exposeFunction("recordLength", (n) => popup.lengths.push(n));
  await popup.goto(`chrome-extension://${extensionId}/popup.html?tabId=${tab}&maxTokens=${maxTokens}&model=${encodeURIComponent(server.url + model)}`);
  await popup.evaluate(() => {
    const status = document.getElementById("status");
    const summary = document.getElementById("summary");
    new MutationObserver(() => window.recordStatus(status.textContent)).observe(status, { childList: true, characterData: true, subtree: true });
    new MutationObserver(() => window.recordLength(summary.textContent.length)).observe(summary, { childList: true, characterData: true, subtree: true });
  });
  return popup;
}

/** Clicks #summarize and waits for #status to end with done or error; returns the outcome. */
async function summarize(popup, timeout = 120_000) {
  await popup.click("#summarize");
  await popup.waitForFunction(() => /done|^error: /.test(document.getElementById("status").textContent), null, { timeout });
  return {
    status: await popup.textContent("#status"),
    summary: await popup.textContent("#summary"),
    page: await popup.evaluate(() => window.lastPage),
    promptTokens: JSON.parse(await popup.evaluate(() => document.body.dataset.promptTokens || "[]")),
  };
}

test("chunks keep paragraphs whole and in order, within the budget; a paragraph longer than a chunk is cut at sentences", async () => {
  const words = async (t) => t.split(/\s+/).filter(Boolean).length; // a stand-in tokenizer: one token a word
  const text = "One two three.\n\nFour five six seven.\n\n\nEight nine.\n\nA b c d e. F g h i j. K l m n o.\n\nEnd.";
  const paras = paragraphs(text);
  assert.deepEqual(paras, ["One two three.", "Four five six seven.", "Eight nine.", "A b c d e. F g h i j. K l m n o.", "End."]);
  const chunks = await packChunks(paras, 8, words);
  assert.deepEqual(chunks, ["One two three.\n\nFour five six seven.", "Eight nine.\n\nA b c d e.", "F g h i j.", "K l m n o.\n\nEnd."]);
  for (const c of chunks) assert.ok(await words(c) <= 8);
  assert.deepEqual(paragraphs("no blank lines\nbut two lines"), ["no blank lines", "but two lines"]);
});

test("the built extension asks for few permissions and its JS has no eval / new Function (CSP)", () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(EXT, "manifest.json"), "utf8"));
  assert.equal(manifest.manifest_version, 3);
  assert.equal(manifest.content_security_policy.extension_pages, "script-src 'self' 'wasm-unsafe-eval'; object-src 'self'");
  assert.deepEqual(manifest.permissions.sort(), ["activeTab", "contextMenus", "offscreen", "scripting", "storage"]);
  assert.deepEqual(manifest.host_permissions, ["http://127.0.0.1/*"], "the --test build only");
  const files = fs.readdirSync(EXT, { recursive: true }).filter((f) => f.endsWith(".js"));
  assert.ok(files.length >= 10 && files.includes(path.join("pkg", "wasm", "ferrolm.js")) && files.includes(path.join("vendor", "Readability.js")), files.join(" "));
  for (const f of files) {
    const js = fs.readFileSync(path.join(EXT, f), "utf8");
    assert.doesNotMatch(js, /\beval\s*\(/, `${f} calls eval`);
    assert.doesNotMatch(js, /new\s+Function\b/, `${f} uses new Function`);
  }
  assert.ok(fs.statSync(path.join(root, "dist/ferrolm-extension.zip")).size > 100_000, "the zip for the stores");
});

test("a local article is read with Readability and summarised: the text streams into #summary and equals the package's own summary", async () => {
  const popup = await openPopup(tabs.article);
  const r = await summarize(popup);
  assert.match(r.status, /^Summary done in [\d.]+ s\.$/);
  assert.equal(r.page.method, "readability");
  assert.equal(r.page.title, "Lighthouses of the north coast");
  assert.equal(r.page.url, `${server.url}/pages/article.html`);
  // The article only: no navigation, no footer (the heading that repeats the title goes too).
  assert.equal(r.page.text, ARTICLE_PARAGRAPHS.join("\n\n"));
  assert.equal(r.promptTokens.length, 1, "one part");
  assert.ok(r.summary.length > 0, "a summary was written");
  assert.ok(new Set(popup.lengths.filter((n) => n > 0)).size >= 3, `it streamed (${popup.lengths.length} updates)`);
  assert.ok(popup.statuses.some((s) => /Downloading the model \(first use\)/.test(s)), popup.statuses.join(" | "));
  firstSummary = r;
  await popup.close();

  // The reference: summarize.js with the package in a plain page (no extension) on the same text.
  const browser = await launchBrowser();
  try {
    const page = await openHarness(browser, server.url);
    const want = await page.evaluate(async ({ url, article }) => {
      const { summarizePage } = await import("/ext/summarize.js");
      const engine = await window.ferrolm.load(url, { cache: false });
      const handlers = { maxTokens: 32, signal: new AbortController().signal, onStage() {}, onText() {} };
      return (await summarizePage(engine, article, handlers)).summary;
    }, { url: TINY, article: { title: r.page.title, url: r.page.url, text: r.page.text } });
    assert.equal(r.summary, want);
  } finally {
    await browser.close();
  }
});

test("greedy summaries are repeatable", async () => {
  const popup = await openPopup(tabs.article);
  const r = await summarize(popup);
  assert.match(r.status, /done/);
  assert.equal(r.summary, firstSummary.summary);
  assert.deepEqual(r.promptTokens, firstSummary.promptTokens);
  await popup.close();
});

test("killing the service worker mid-summary does not stop the stream", async () => {
  const popup = await openPopup(tabs.article, { maxTokens: 96 });
  await popup.click("#summarize");
  await popup.waitForFunction(() => document.getElementById("summary").textContent.length > 0, null, { timeout: 60_000 });
  const cdp = await context.newCDPSession(popup);
  const workers = async () => (await cdp.send("Target.getTargets")).targetInfos
    .filter((t) => t.type === "service_worker" && t.url.startsWith(`chrome-extension://${extensionId}/`));
  const [worker] = await workers();
  assert.ok(worker, "the service worker runs");
  await cdp.send("Target.closeTarget", { targetId: worker.targetId });
  const lengthAtKill = (await popup.textContent("#summary")).length;
  const statusAtKill = await popup.textContent("#status");
  // Closing a target is asynchronous: the target list can still name the worker for a moment.
  // Wait for that worker (its targetId) to leave the list; a fresh one that Chrome starts later for
  // some event would have a new targetId and is not the one we killed.
  const stillThere = async () => (await workers()).some((t) => t.targetId === worker.targetId);
  const killDeadline = Date.now() + 10_000;
  while ((await stillThere()) && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await stillThere(), false, "the service worker is gone");
  assert.match(statusAtKill, /Writing the summary/, "still generating when it was killed");
  await popup.waitForFunction(() => /done|^error: /.test(document.getElementById("status").textContent), null, { timeout: 120_000 });
  assert.match(await popup.textContent("#status"), /^Summary done/);
  assert.ok((await popup.textContent("#summary")).length > lengthAtKill, "text kept coming after the kill");
  await cdp.detach();
  await popup.close();
});

test("a long page is split at paragraphs within the context and the parts are combined", async () => {
  const maxTokens = 24;
  const popup = await openPopup(tabs.long, { maxTokens });
  const r = await summarize(popup, 240_000);
  const parts = Number(/(\d+) parts/.exec(r.status)?.[1]);
  assert.match(r.status, /^Summary done: \d+ parts, [\d.]+ s\.$/);
  assert.ok(parts >= 3, r.status);
  for (let k = 1; k <= parts; k++) {
    assert.ok(popup.statuses.includes(`Summarising part ${k} of ${parts} …`), `part ${k} of ${parts} shown: ${popup.statuses.join(" | ")}`);
  }
  assert.ok(popup.statuses.some((s) => s.startsWith("Combining the partial summaries")));
  assert.equal(await popup.locator("#parts li").count(), parts);
  assert.ok(r.promptTokens.length > parts, "the parts, then the combination");
  for (const n of r.promptTokens) assert.ok(n + maxTokens <= CONTEXT, `a prompt of ${n} tokens leaves room for the reply: ${r.promptTokens}`);
  // Budgeted with the tokenizer, not a guess: the parts fill the context well.
  assert.ok(Math.max(...r.promptTokens.slice(0, parts)) > CONTEXT / 2, `${r.promptTokens}`);
  // Split at paragraph boundaries: every paragraph is in exactly one part (the page text holds them all).
  assert.equal(r.page.text, LONG_PARAGRAPHS.join("\n\n"));
  await popup.close();
});

test("with the model server stopped, a new engine summarises from the cache", async () => {
  const popup = await openPopup(tabs.article);
  // A fresh offscreen document: the next summary loads the model again.
  await popup.evaluate(() => chrome.runtime.sendMessage({ type: "close-offscreen" }));
  await server.stop();
  try {
    const r = await summarize(popup);
    assert.match(r.status, /done/);
    assert.ok(popup.statuses.some((s) => /from the cache/.test(s)), popup.statuses.join(" | "));
    assert.equal(r.summary, firstSummary.summary);
  } finally {
    await server.start();
  }
  await popup.close();
});

test("a page without text gets a clear message", async () => {
  const popup = await openPopup(tabs.empty);
  const r = await summarize(popup, 30_000);
  assert.equal(r.status, "error: this page has no text to summarise");
  assert.equal(r.summary, "");
  assert.equal(await popup.isEnabled("#summarize"), true);
  await popup.close();
});

test("Stop ends a summary; the context menu's selection is summarised next (the engine was not left busy)", async () => {
  const popup = await openPopup(tabs.article, { maxTokens: 200 });
  await popup.click("#summarize");
  await popup.waitForFunction(() => document.getElementById("summary").textContent.length > 0 ||
    document.getElementById("status").textContent.startsWith("error"), null, { timeout: 60_000 });
  assert.match(await popup.textContent("#status"), /^(Writing the summary|Summarising part 1 of \d+) …$/);
  await popup.click("#stop");
  await popup.waitForFunction(() => document.body.dataset.state === "idle", null, { timeout: 10_000 });
  assert.equal(await popup.textContent("#status"), "Stopped.");
  assert.equal(await popup.isEnabled("#summarize"), true);
  await popup.close();

  // What the context menu's handler stores before it opens popup.html?selection=1.
  const sw = context.serviceWorkers()[0] || await context.waitForEvent("serviceworker");
  const selection = { text: "Volunteers open two lighthouses every summer.", title: "Lighthouses", url: `${server.url}/pages/article.html` };
  await sw.evaluate((s) => chrome.storage.session.set({ selection: s }), selection);
  const menu = await context.newPage();
  await menu.goto(`chrome-extension://${extensionId}/popup.html?selection=1&maxTokens=8&model=${encodeURIComponent(server.url + TINY)}`);
  const t0 = Date.now();
  await menu.click("#summarize");
  await menu.waitForFunction(() => /done|^error: /.test(document.getElementById("status").textContent), null, { timeout: 60_000 });
  assert.match(await menu.textContent("#status"), /^Summary done/);
  assert.deepEqual(await menu.evaluate(() => window.lastPage), { ...selection, method: "selection" });
  assert.ok(Date.now() - t0 < 30_000, "the stopped run did not hold the engine");
  await menu.close();
});

test("the options page saves the model URL and summary length, lists the cached model and clears it", async () => {
  const options = await context.newPage();
  await options.goto(`chrome-extension://${extensionId}/options.html`);
  await options.waitForFunction(() => document.getElementById("model-url").value.startsWith("https://"));
  await options.waitForFunction(() => /tiny-qwen3-q4_k_m\.gguf: [\d.]+ MB$/.test(document.getElementById("cached").textContent));
  await options.fill("#model-url", `${server.url}${TINY}`);
  await options.selectOption("#length", "short");
  await options.click("#save");
  await options.waitForFunction(() => document.getElementById("status").textContent === "Saved.");
  assert.deepEqual(await options.evaluate(() => chrome.storage.local.get(["modelUrl", "length"])), { modelUrl: `${server.url}${TINY}`, length: "short" });
  await options.click("#clear");
  await options.waitForFunction(() => document.getElementById("status").textContent === "The cached models were removed.");
  await options.waitForFunction(() => document.getElementById("cached").textContent === "None.");
  assert.deepEqual(await options.evaluate(async () => (await import("./pkg/index.js")).cache.list()), []);
  await options.close();
});
