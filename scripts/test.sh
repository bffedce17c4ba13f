#!/usr/bin/env bash
# The whole test suite: set-up (driver, models), then every Rust test on the Vulkan adapter
# (lavapipe on machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --release --locked "$@"
