#!/usr/bin/env bash
# The whole test suite: set-up (driver, models), every Rust test on the Vulkan adapter (lavapipe
# on machines without a GPU), then the browser package: the wasm build (warnings are errors),
# and the end-to-end tests in headless Chromium (SwiftShader's WebGPU without a GPU).
# Arguments go to `cargo test`. FERROLM_SKIP_BROWSER=1 runs the Rust tests only; with the nightly
# toolchain the fuzz targets run briefly after `cargo test` (FERROLM_SKIP_FUZZ=1 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --release --locked "$@"

# Fuzzing, when the nightly toolchain is present: every target of fuzz/ for a short bounded time
# (FERROLM_FUZZ_SECONDS each, default 20; the instrumented build takes ~10 minutes the first
# time). FERROLM_SKIP_FUZZ=1 skips it. Crash inputs are replayed by `cargo test` above on stable.
if [ "${FERROLM_SKIP_FUZZ:-0}" != 1 ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    scripts/fuzz.sh --seconds "${FERROLM_FUZZ_SECONDS:-20}"
fi

if [ "${FERROLM_SKIP_BROWSER:-0}" != 1 ]; then
    scripts/setup-browser.sh
    FERROLM_WERROR=1 scripts/build-wasm.sh
    node --test --test-concurrency=1 tests/browser/
fi
