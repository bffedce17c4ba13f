#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (cargo-fuzz, libFuzzer) and prints, per target: executions,
# executions/s, crashes and corpus size.
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--keep] [TARGET...]
#
# --seconds N  time per target (default 60); --jobs J  parallel libFuzzer jobs per target
# (default 1); --keep  merge the new interesting inputs into fuzz/corpus/TARGET (then minimise
# it with `cargo fuzz cmin TARGET`). Without --keep the committed corpus is only read.
# FERROLM_FUZZ_TIMEOUT: seconds one input may take before it counts as a hang (default 60: under
# nice 19 on a loaded machine a 0.1 s input can wait 10 s for the CPU).
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz into
# ${FERROLM_TOOLS:-~/.cache/ferrolm/tools} once (a few minutes) and reuses it. A crash leaves its
# input in fuzz/artifacts/TARGET/: fix it, then copy the input to fuzz/regressions/TARGET-NAME so
# that `cargo test` (tests/hostile.rs) replays it on stable. Exit status: 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
jobs=1
keep=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(gguf config tokenizer template cli)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly); nothing fuzzed" >&2
    exit 2
fi
version=0.13.2
tools="${FERROLM_TOOLS:-$HOME/.cache/ferrolm/tools}/cargo-fuzz-$version"
if ! { [ -x "$tools/bin/cargo-fuzz" ] && "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $version\$"; }; then
    echo "fuzz: installing cargo-fuzz $version into $tools (once; takes a few minutes)"
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "=$version" --root "$tools" --locked
fi
export PATH="$tools/bin:$PATH"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The instrumented build is kept outside the clone (CI starts from a fresh one): rebuilt only
# when the sources change.
fuzz_target="${FERROLM_FUZZ_TARGET_DIR:-$HOME/.cache/ferrolm/fuzz-target}"
# Instrumented release build of every target (debug assertions on: overflow panics count).
if ! cargo +nightly fuzz build --target-dir "$fuzz_target" >"$scratch/build.log" 2>&1; then
    tail -30 "$scratch/build.log" >&2
    exit 1
fi
parallel=()
[ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
failed=0
printf '%-10s %14s %10s %8s %8s\n' target executions exec/s crashes corpus
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$scratch/$t"
    log="$scratch/$t.log"
    # Crashes, hangs, OOMs and leaks count; slow-unit-* files (slow, not stuck) do not.
    failures() { ls "fuzz/artifacts/$t" | grep -cE '^(crash|timeout|oom|leak)-' || true; }
    before=$(failures)
    # New inputs go to the scratch directory; the committed corpus is read as seeds.
    set +e
    cargo +nightly fuzz run --target-dir "$fuzz_target" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" "${parallel[@]}" -timeout="${FERROLM_FUZZ_TIMEOUT:-60}" -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    status=$?
    set -e
    [ "$jobs" -gt 1 ] && cat fuzz-*.log >>"$log" 2>/dev/null && rm -f fuzz-*.log
    execs=$(grep -h '^stat::number_of_executed_units' "$log" | awk '{ s += $2 } END { print s + 0 }')
    rate=$(grep -h '^stat::average_exec_per_sec' "$log" | awk '{ s += $2 } END { print s + 0 }')
    crashes=$(( $(failures) - before ))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    corpus=$(cat <(ls "$scratch/$t") <(ls "fuzz/corpus/$t") | sort -u | wc -l)
    printf '%-10s %14s %10s %8s %8s\n' "$t" "$execs" "$rate" "$crashes" "$corpus"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
    fi
    if [ "$keep" = 1 ]; then
        cp -n "$scratch/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    fi
done
exit "$failed"
