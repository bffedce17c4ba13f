#!/usr/bin/env node
// Takes docs/extension-popup.png, the README's picture of the extension's popup mid-summary:
// builds the extension (--test), serves a short article on 127.0.0.1, and summarises it with
// SmolLM2-135M in headless Chromium (SwiftShader WebGPU without a GPU; a minute or two).
//   node scripts/extension-screenshot.mjs [OUT.png]
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, root, CHROMIUM, CHROMIUM_ARGS, SMOLLM2 } from "../tests/browser/helpers.mjs";

const out = path.resolve(process.argv[2] || path.join(root, "docs/extension-popup.png"));
const ext = path.join(root, "dist/extension");
execFileSync(path.join(root, "scripts/build-extension.sh"), ["--test"], { stdio: "inherit" });
const pages = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-shot-"));
fs.writeFileSync(path.join(pages, "article.html"), `<!doctype html><meta charset="utf-8"><title>The lighthouse at Rock Point</title>
<article><h1>The lighthouse at Rock Point</h1><p>The lighthouse at Rock Point was built in 1821 to guide fishing boats into the harbour.
Keepers lived in the tower until 1987, when the light was automated. Today volunteers open it to visitors every summer.</p></article>`);
const server = await startServer(["--test-hooks", "--mount", `/pages/=${pages}`]);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-shot-profile-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM, headless: true,
  args: [...CHROMIUM_ARGS, `--disable-extensions-except=${ext}`, `--load-extension=${ext}`],
});
try {
  const sw = context.serviceWorkers()[0] || await context.waitForEvent("serviceworker");
  const id = new URL(sw.url()).host;
  await (await context.newPage()).goto(`${server.url}/pages/article.html`);
  const tab = (await sw.evaluate(() => chrome.tabs.query({}))).find((t) => (t.url || "").endsWith("/article.html"));
  const popup = await context.newPage();
  await popup.setViewportSize({ width: 424, height: 300 });
  await popup.goto(`chrome-extension://${id}/popup.html?tabId=${tab.id}&maxTokens=64&model=${encodeURIComponent(server.url + SMOLLM2)}`);
  await popup.click("#summarize");
  await popup.waitForFunction(() => document.getElementById("summary").textContent.length > 60, null, { timeout: 900_000 });
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await popup.screenshot({ path: out });
  console.log(`extension-screenshot: ${out} (${fs.statSync(out).size} bytes)`);
} finally {
  await context.close();
  server.close();
  fs.rmSync(pages, { recursive: true, force: true });
  fs.rmSync(profile, { recursive: true, force: true });
}
