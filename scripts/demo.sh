#!/usr/bin/env bash
# Set-up, build, and run the default model: streams a completion of the prompt given as the
# first argument (default "Once upon a time") with the native CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo build --release --locked
exec target/release/ferrolm generate models/SmolLM2-135M-Instruct.Q4_1.gguf \
    --prompt "${1:-Once upon a time}" --max-tokens "${MAX_TOKENS:-64}"
