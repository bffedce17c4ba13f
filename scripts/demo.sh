#!/usr/bin/env bash
# The browser demo: set-up (models), build the wasm package (pkg/), then serve www/ + pkg/ +
# models/ on http://127.0.0.1:${PORT:-8080}/ (scripts/serve.mjs: static files with Range
# requests). Open that address in a browser with WebGPU; ?model=URL picks another GGUF.
#
#   scripts/demo.sh                        # the browser demo page
#   scripts/demo.sh --cli "Once upon a time"   # the native CLI instead (streams a completion)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

if [ "${1:-}" = "--cli" ]; then
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
    cargo build --release --locked
    exec target/release/ferrolm generate models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --prompt "${2:-Once upon a time}" --max-tokens "${MAX_TOKENS:-64}"
fi

command -v node >/dev/null || { echo "demo: Node.js (18+) is needed for the local server" >&2; exit 1; }
scripts/build-wasm.sh
port="${PORT:-8080}"
echo "demo: open http://127.0.0.1:$port/ in a browser with WebGPU (Chrome/Edge 113+); Ctrl-C stops"
exec node scripts/serve.mjs --port "$port"
