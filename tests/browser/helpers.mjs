// Shared by the browser tests: the static server (scripts/serve.mjs with --test-hooks) on
// 127.0.0.1, Debian's headless Chromium with WebGPU (SwiftShader without a GPU), the fixture.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SMOLLM2 = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
export const SMOLLM2_BYTES = fs.statSync(path.join(root, SMOLLM2)).size;
export const fixture = JSON.parse(fs.readFileSync(path.join(root, "tests/fixtures/smollm2-135m-instruct-q4_1.json"), "utf8"));

export const CHROMIUM = process.env.FERROLM_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-dev-shm-usage",
];

/** Runs scripts/serve.mjs on `port` (0: a free one); resolves to [child, url]. */
async function spawnServer(port, extraArgs) {
  const child = spawn(process.execPath, [path.join(root, "scripts/serve.mjs"), "--port", String(port), ...extraArgs], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /serving (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return [child, url];
}

/** Starts scripts/serve.mjs on a free port; resolves to { url, log(), clearLog(), fault(params),
 * stop(), start(), close() }: `fault("cut=40000000")` sets the server's faults (see serve.mjs),
 * `stop()` ends the server process and `start()` starts it again on the same port. */
export async function startServer(extraArgs = ["--test-hooks"]) {
  let [child, url] = await spawnServer(0, extraArgs);
  const port = Number(new URL(url).port);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill();
    await exited;
  };
  return {
    url,
    async log() { return (await fetch(url + "/__log")).json(); },
    async clearLog() { await fetch(url + "/__log", { method: "POST" }); },
    async fault(params = "") { return (await fetch(`${url}/__fault?${params}`, { method: "POST" })).json(); },
    stop,
    async start() { [child] = await spawnServer(port, extraArgs); },
    close() { child.kill(); },
  };
}

/** Launches headless Chromium with WebGPU (playwright gives it a fresh temporary profile). */
export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** A page on the test harness (window.ferrolm = the package); console errors are kept. */
export async function openHarness(browser, serverUrl, page = "/tests/browser/pages/harness.html") {
  const p = await browser.newPage();
  p.consoleLines = [];
  p.on("console", (m) => p.consoleLines.push(`${m.type()}: ${m.text()}`));
  p.on("pageerror", (e) => p.consoleLines.push(`pageerror: ${e.message}`));
  await p.goto(serverUrl + page);
  await p.waitForFunction(() => window.harnessReady === true, null, { timeout: 30_000 });
  return p;
}
