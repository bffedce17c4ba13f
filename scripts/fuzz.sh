#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (cargo-fuzz, libFuzzer) and prints, per target: executions,
# executions/s, crashes and corpus size.
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--sanitizer S] [--parallel] [--keep] [TARGET...]
#
# --seconds N  time per target (default 60); --jobs J  parallel libFuzzer jobs per target
# (default 1); --sanitizer S  address (default), or none for long runs (3-5x the executions; Rust's
# panics, overflow checks and debug assertions still count); --parallel  run the targets at the
# same time instead of one after the other; --keep  merge the new interesting inputs into fuzz/corpus/TARGET (then minimise
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
sanitizer=address
all_at_once=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --sanitizer) sanitizer="$2"; shift 2 ;;
        --parallel) all_at_once=1; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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
[ "$sanitizer" = address ] || fuzz_target="$fuzz_target-$sanitizer"
# Instrumented release build of every target (debug assertions on: overflow panics count).
if ! cargo +nightly fuzz build --sanitizer "$sanitizer" --target-dir "$fuzz_target" >"$scratch/build.log" 2>&1; then
    tail -30 "$scratch/build.log" >&2
    exit 1
fi
parallel=()
[ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
root=$(pwd)

# Fuzzes target $1 and writes its result line to $scratch/$1.result (and its log's failure lines
# to $scratch/$1.failures). Runs in its own directory: libFuzzer's -jobs logs land in the cwd.
fuzz_one() {
    local t="$1" log="$scratch/$1.log" run="$scratch/$1.run"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$scratch/$t" "$run"
    # Crashes, hangs, OOMs and leaks count; slow-unit-* files (slow, not stuck) do not.
    failures() { ls "$root/fuzz/artifacts/$t" | grep -cE '^(crash|timeout|oom|leak)-' || true; }
    local before status execs rate crashes corpus
    before=$(failures)
    # New inputs go to the scratch directory; the committed corpus is read as seeds.
    set +e
    (cd "$run" && cargo +nightly fuzz run --fuzz-dir "$root/fuzz" --sanitizer "$sanitizer" --target-dir "$fuzz_target" \
        "$t" "$scratch/$t" "$root/fuzz/corpus/$t" -- \
        -max_total_time="$seconds" "${parallel[@]}" -timeout="${FERROLM_FUZZ_TIMEOUT:-60}" -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$t/" >"$log" 2>&1)
    status=$?
    set -e
    cat "$run"/fuzz-*.log >>"$log" 2>/dev/null || true
    execs=$(grep -h '^stat::number_of_executed_units' "$log" | awk '{ s += $2 } END { print s + 0 }')
    rate=$(grep -h '^stat::average_exec_per_sec' "$log" | awk '{ s += $2 } END { print s + 0 }')
    crashes=$(( $(failures) - before ))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    corpus=$(cat <(ls "$scratch/$t") <(ls "fuzz/corpus/$t") | sort -u | wc -l)
    printf '%-10s %14s %10s %8s %8s\n' "$t" "$execs" "$rate" "$crashes" "$corpus" >"$scratch/$t.result"
    if [ "$crashes" -ne 0 ]; then
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >"$scratch/$t.failures" || true
        # A failure libFuzzer did not describe (e.g. a job killed from outside): its log's end.
        [ -s "$scratch/$t.failures" ] || { echo "$t: exit status $status; the log ends:"; tail -n 15 "$log"; } >"$scratch/$t.failures"
    fi
    if [ "$keep" = 1 ]; then
        cp -n "$scratch/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    fi
}

printf '%-10s %14s %10s %8s %8s\n' target executions exec/s crashes corpus
for t in "${targets[@]}"; do
    if [ "$all_at_once" = 1 ]; then
        fuzz_one "$t" &
    else
        fuzz_one "$t"
        cat "$scratch/$t.result"
    fi
done
wait
failed=0
for t in "${targets[@]}"; do
    [ "$all_at_once" = 1 ] && cat "$scratch/$t.result"
    if [ -s "$scratch/$t.failures" ]; then
        failed=1
        cat "$scratch/$t.failures" >&2
    fi
done
exit "$failed"
