#!/usr/bin/env bash
# The whole test suite: set-up (driver, models), every Rust test on the Vulkan adapter (lavapipe
# on machines without a GPU), then the browser package: the wasm build (warnings are errors),
# and the end-to-end tests in headless Chromium (SwiftShader's WebGPU without a GPU).
# Arguments go to `cargo test`. FERROLM_SKIP_BROWSER=1 runs the Rust tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --release --locked "$@"

if [ "${FERROLM_SKIP_BROWSER:-0}" != 1 ]; then
    scripts/setup-browser.sh
    FERROLM_WERROR=1 scripts/build-wasm.sh
    node --test --test-concurrency=1 tests/browser/
fi
