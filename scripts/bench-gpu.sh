#!/usr/bin/env bash
# Native decode/prefill benchmark for a machine with a GPU, needing only the release binary: no
# model files, no network. Runs `ferrolm bench --synthetic` for the SmolLM2-135M shape and the
# Llama 3.2 1B, Llama 3.2 3B and Llama 3.1 8B shapes at Q4_K, Q4_0 and Q8_0, and prints a table
# (weight bytes per token, prefill and decode tokens/s, the device's copy GB/s and the fraction of
# it decoding reaches), then the raw JSON lines.
#
#   scripts/bench-gpu.sh [--quick] [--bin PATH] [--prompt-tokens N] [--gen-tokens M]
#
# --quick: the SmolLM2 and 1B shapes only. Each run is stopped after FERROLM_BENCH_RUN_TIMEOUT
# seconds (default 300) and reported as an error line. The binary defaults to target/release/ferrolm
# (build it with `cargo build --release`; it is ~12 MB, so it travels to a GPU machine alone).
# Without libvulkan on the machine, unpack Debian's libvulkan1 first (a directory `.gl/` of .deb
# files beside the binary is unpacked automatically, see /work/.library/device/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."

bin=target/release/ferrolm
prompt=128
gen=32
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --prompt-tokens) prompt="$2"; shift 2 ;;
        --gen-tokens) gen="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "bench-gpu: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "bench-gpu: no binary at $bin (cargo build --release)" >&2; exit 2; }
if ! ldconfig -p 2>/dev/null | grep -q libvulkan && [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi

llama=(
    "1b:arch=llama,layers=16,d=2048,ffn=8192,heads=32,kv_heads=8,vocab=128256"
    "3b:arch=llama,layers=28,d=3072,ffn=8192,heads=24,kv_heads=8,vocab=128256"
    "8b:arch=llama,layers=32,d=4096,ffn=14336,heads=32,kv_heads=8,vocab=128256"
)
[ "$quick" = 1 ] && llama=("${llama[0]}")
runs=("smollm2-135m:arch=llama,layers=30,d=576,ffn=1536,heads=9,kv_heads=3,vocab=49152,type=q4_1,out_type=q8_0")
for shape in "${llama[@]}"; do
    for ty in q4_k q4_0 q8_0; do
        runs+=("${shape%%:*}-$ty:${shape#*:},type=$ty")
    done
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for run in "${runs[@]}"; do
    name="${run%%:*}"
    # A run that hangs (a driver fault, say) costs its own line, not the rest of the table.
    if out=$(timeout "${FERROLM_BENCH_RUN_TIMEOUT:-300}" "$bin" bench --synthetic "${run#*:}" --context 2048 --prompt-tokens "$prompt" --gen-tokens "$gen" 2>&1); then
        echo "$name $out" >>"$results"
    else
        echo "$name {\"error\": $(printf '%s' "$out" | tail -1 | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >>"$results"
    fi
    echo "bench-gpu: $name done" >&2
done

python3 - "$results" <<'EOF'
import json, sys
rows = [line.split(" ", 1) for line in open(sys.argv[1]) if line.strip()]
first = next((json.loads(j) for _, j in rows if "adapter" in json.loads(j)), {})
print(f"adapter: {first.get('adapter', '?')} ({first.get('backend', '?')}), copy {first.get('copy_gb_per_s', 0):.1f} GB/s")
print(f"{'model':<16} {'MB/token':>9} {'prefill tok/s':>14} {'decode tok/s':>13} {'bandwidth':>10}  kernels")
for name, j in rows:
    r = json.loads(j)
    if "error" in r:
        print(f"{name:<16} error: {r['error'].strip()}")
        continue
    kernels = ", ".join(sorted(set(r.get("kernel_variants", {}).values()))) if isinstance(r.get("kernel_variants"), dict) else ""
    print(f"{name:<16} {r['weight_bytes_per_token'] / 1e6:9.1f} {r['prefill_tokens_per_s']:14.1f} {r['decode_tokens_per_s']:13.1f} {r['bandwidth_fraction']:10.2f}  {kernels}")
print()
for name, j in rows:
    print(name, j.strip())
EOF
