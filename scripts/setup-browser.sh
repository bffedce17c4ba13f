#!/usr/bin/env bash
# Set-up for the browser tests, safe to re-run: Debian's Chromium (WebGPU headless; SwiftShader
# without a GPU) and the npm dev packages pinned in package-lock.json (playwright-core drives
# Chromium; typescript checks the package's declarations; @mozilla/readability is bundled into
# the extension). Needs root (or sudo) for apt, Node.js 18+ with npm, and network access to
# Debian's mirrors and the npm registry. No browser download.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup-browser: need root to run: $*" >&2; return 1; fi
}

if [ -z "${FERROLM_CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
    echo "setup-browser: installing Debian's chromium"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi

command -v node >/dev/null || { echo "setup-browser: Node.js (18+) and npm are needed" >&2; exit 1; }
# npm ci only when package-lock.json changed since the last install.
stamp=node_modules/.ferrolm-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup-browser: npm ci (playwright-core, typescript, @mozilla/readability)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
fi
echo "setup-browser: ready ($(${FERROLM_CHROMIUM:-/usr/bin/chromium} --version 2>/dev/null | head -1), node $(node --version))"
