// The npm package built into pkg/ by scripts/build-wasm.sh: `npm pack` works and ships exactly
// the ESM wrapper, the declarations, the README and the wasm; the declarations type-check the
// README's usage (tsc --strict).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { root } from "./helpers.mjs";

const pkg = path.join(root, "pkg");

test("npm pack produces a complete package", () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "ferrolm-pack-"));
  try {
    const json = execFileSync("npm", ["pack", "--json", "--pack-destination", out], { cwd: pkg, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const [info] = JSON.parse(json);
    const cargoVersion = /^version = "([^"]+)"/m.exec(fs.readFileSync(path.join(root, "Cargo.toml"), "utf8"))[1];
    assert.equal(info.name, "ferrolm");
    assert.equal(info.version, cargoVersion);
    const files = info.files.map((f) => f.path).sort();
    assert.deepEqual(files, [
      "README.md", "cache.js", "chat.js", "engine.js", "errors.js", "index.d.ts", "index.js", "package.json", "source.js", "stream.js",
      "wasm/ferrolm.d.ts", "wasm/ferrolm.js", "wasm/ferrolm_bg.wasm", "wasm/ferrolm_bg.wasm.d.ts", "worker.js",
    ]);
    const wasm = info.files.find((f) => f.path === "wasm/ferrolm_bg.wasm");
    assert.ok(wasm.size > 500_000 && wasm.size < 8_000_000, `wasm size ${wasm.size}`);
    assert.ok(fs.statSync(path.join(out, info.filename)).size > 200_000, "the tarball was written");
    const manifest = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8"));
    assert.equal(manifest.type, "module");
    assert.equal(manifest.exports["."].types, "./index.d.ts");
    const readme = fs.readFileSync(path.join(pkg, "README.md"), "utf8");
    assert.match(readme, /import \{ load \} from "ferrolm"/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test("the TypeScript declarations type-check the documented usage", () => {
  const tsc = path.join(root, "node_modules/.bin/tsc");
  const args = ["--noEmit", "--strict", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler",
    "--lib", "es2022,dom,dom.asynciterable", "--types", "", path.join(root, "tests/browser/api-usage.ts")];
  let output = "";
  try {
    execFileSync(tsc, args, { cwd: root, encoding: "utf8" });
  } catch (e) {
    output = `${e.stdout}${e.stderr}`;
  }
  assert.equal(output, "", output);
});

test("the package's JS sources type-check (JSDoc, checkJs, strict); both engines implement Engine", () => {
  // tests/browser/tsconfig.pkg.json checks pkg/*.js against index.d.ts and the wasm bindings'
  // declarations: LocalEngine (engine.js) and WorkerEngine (index.js) are `@implements {Engine}`.
  const tsc = path.join(root, "node_modules/.bin/tsc");
  let output = "";
  try {
    execFileSync(tsc, ["-p", path.join(root, "tests/browser/tsconfig.pkg.json")], { cwd: root, encoding: "utf8" });
  } catch (e) {
    output = `${e.stdout}${e.stderr}`;
  }
  assert.equal(output, "", output);
  for (const [file, cls] of [["engine.js", "LocalEngine"], ["index.js", "WorkerEngine"]]) {
    assert.match(fs.readFileSync(path.join(pkg, file), "utf8"), new RegExp(`@implements \\{Engine\\} \\*/\\n(export )?class ${cls}\\b`), `${cls} is declared to implement Engine`);
  }
});

test("the wrapper modules parse as ES modules and export the documented names", async () => {
  // errors.js has no browser dependencies: import it here and check the class hierarchy.
  const errors = await import(path.join(pkg, "errors.js"));
  for (const name of ["WebGPUUnavailableError", "ModelFormatError", "UnsupportedModelError", "DeviceLimitError", "NetworkError", "AbortError", "IntegrityError"]) {
    const e = new errors[name]("x");
    assert.ok(e instanceof errors.FerrolmError && e instanceof Error);
    assert.equal(e.name, name);
  }
  const mapped = errors.toTypedError(Object.assign(new Error("bad magic"), { name: "ModelFormatError" }));
  assert.ok(mapped instanceof errors.ModelFormatError);
  assert.equal(mapped.message, "bad magic");
  const index = fs.readFileSync(path.join(pkg, "index.js"), "utf8");
  for (const name of ["load", "cache", "WebGPUUnavailableError", "ModelFormatError", "UnsupportedModelError", "DeviceLimitError", "NetworkError", "AbortError", "IntegrityError"]) {
    assert.match(index, new RegExp(`\\b${name}\\b`));
  }
});
