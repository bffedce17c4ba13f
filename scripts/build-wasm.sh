#!/usr/bin/env bash
# Builds the browser package into pkg/ (a complete npm package: `cd pkg && npm pack`):
# the library compiled to wasm32, bound with wasm-bindgen (--target web, ESM), plus the JS/TS
# wrapper, README and package.json from pkg-template/.
#
# Installs what it needs: the Rust target wasm32-unknown-unknown, and wasm-bindgen-cli at the
# exact version of the wasm-bindgen crate in Cargo.lock (a ~5 minute build, cached in
# ${FERROLM_TOOLS:-~/.cache/ferrolm/tools} and reused). No wasm-opt (Debian's binaryen 108
# miscompiles); set FERROLM_WASM_OPT=/path/to/wasm-opt to run a newer one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

# 1. The Rust target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "build-wasm: adding the Rust target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# 2. wasm-bindgen-cli, the same version as the crate (the two must match exactly).
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "build-wasm: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
tools="${FERROLM_TOOLS:-$HOME/.cache/ferrolm/tools}/wasm-bindgen-$version"
bindgen="$tools/bin/wasm-bindgen"
if ! { [ -x "$bindgen" ] && "$bindgen" --version 2>/dev/null | grep -q " $version\$"; }; then
    echo "build-wasm: installing wasm-bindgen-cli $version into $tools (once; takes a few minutes)"
    # Only the wasm-bindgen binary, without TLS (it is for the test runner's downloads): less to
    # build. Its own lock file may name crate versions the registry no longer serves: fall back to
    # a fresh resolution. Built outside our target directory.
    install=(cargo install wasm-bindgen-cli --version "=$version" --root "$tools" --no-default-features --bin wasm-bindgen)
    env -u CARGO_TARGET_DIR "${install[@]}" --locked || env -u CARGO_TARGET_DIR "${install[@]}"
fi

# 3. The wasm library. FERROLM_WERROR=1 (the test suite) fails on any compiler warning.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo build --lib --release --locked --target wasm32-unknown-unknown 2>&1 | tee "$log"
if [ "${FERROLM_WERROR:-0}" = 1 ] && grep -q '^warning' "$log"; then
    echo "build-wasm: the wasm build has warnings (FERROLM_WERROR=1)" >&2
    exit 1
fi
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/ferrolm.wasm"

# 4. The package.
rm -rf pkg
mkdir -p pkg/wasm
"$bindgen" --target web --out-dir pkg/wasm --out-name ferrolm "$wasm"
if [ -n "${FERROLM_WASM_OPT:-}" ]; then
    "$FERROLM_WASM_OPT" -O2 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        pkg/wasm/ferrolm_bg.wasm -o pkg/wasm/ferrolm_bg.wasm
fi
cp pkg-template/*.js pkg-template/*.d.ts pkg-template/README.md pkg/
crate_version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
sed "s/\"version\": \"0.0.0\"/\"version\": \"$crate_version\"/" pkg-template/package.json > pkg/package.json
echo "build-wasm: pkg/ ready (ferrolm $crate_version, wasm $(du -h pkg/wasm/ferrolm_bg.wasm | cut -f1))"
