#!/usr/bin/env bash
# Speculative decoding on lavapipe: decode tok/s with and without prompt lookup (the same run
# checks the tokens are identical) on a summarisation-style prompt (a passage, then a request to
# quote it) and on a free-writing prompt. Plain and speculative runs alternate ROUNDS times (the
# medians are reported, so a drift in the machine's speed hits both alike).
# Usage: scripts/bench-speculative.sh [MODEL] [GEN_TOKENS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
gen=${2:-64}
rounds=${3:-5}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg}
mkdir -p "$XDG_RUNTIME_DIR"
bin=target/release/ferrolm
[ -x "$bin" ] || cargo build --release --bin ferrolm

summarise='<|im_start|>user
Read the passage and then quote its first two sentences exactly.

The lighthouse on the northern cape was built in 1871 by a crew of eleven stonemasons from the village of Harrow. It stands thirty-two metres tall and its lamp can be seen from twenty nautical miles away on a clear night. For most of the twentieth century the light was kept by the Morrow family, who lived in the small cottage at its base and rowed to the mainland once a week for supplies. In 1994 the light was automated and the cottage became a museum about the history of the coast.<|im_end|>
<|im_start|>assistant
'
free='<|im_start|>user
Write a short story about a fox who learns to play the violin.<|im_end|>
<|im_start|>assistant
'
for name in summarise free; do
  echo "== $name (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bin" bench "$model" --prompt "${!name}" --gen-tokens "$gen" --speculative prompt-lookup --rounds "$rounds" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ["prompt_tokens","generated_tokens","plain_decode_tokens_per_s","decode_tokens_per_s","speedup","speedup_per_round","identical_tokens","acceptance_rate","tokens_per_target_step"]}))'
done
