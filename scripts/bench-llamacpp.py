#!/usr/bin/env python3
"""The CPU reference for ferrolm's benchmarks: llama.cpp (through llama-cpp-python) on the same
cores, measured the way `ferrolm bench` measures: prefill of a prompt of N tokens, then decode of
M single tokens. Prints one JSON line.

    pip install llama-cpp-python==0.3.36     # builds llama.cpp (~10 min on 2 cores; not in CI)
    scripts/bench-llamacpp.py models/SmolLM2-135M-Instruct.Q4_1.gguf [--threads 2]
        [--prompt-tokens 128] [--gen-tokens 32] [--runs 3]

The best of --runs runs is reported for each phase (the same prompt of ordinary token ids as
`ferrolm bench`: (100 + i * 7919) mod vocab).
"""
import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    from llama_cpp import Llama, __version__

    llm = Llama(a.model, n_threads=a.threads, n_threads_batch=a.threads, n_ctx=a.prompt_tokens + a.gen_tokens + 8,
                n_batch=a.prompt_tokens, verbose=False)
    vocab = llm.n_vocab()
    prompt = [(100 + i * 7919) % vocab for i in range(a.prompt_tokens)]
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(a.runs):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prefill = a.prompt_tokens / (time.perf_counter() - start)
        token = prompt[-1]
        start = time.perf_counter()
        for _ in range(a.gen_tokens):
            llm.eval([token])
            token = (token * 31 + 7) % vocab
        decode = a.gen_tokens / (time.perf_counter() - start)
        best_prefill, best_decode = max(best_prefill, prefill), max(best_decode, decode)
    print(json.dumps({
        "engine": f"llama.cpp (llama-cpp-python {__version__})",
        "model": os.path.basename(a.model),
        "threads": a.threads,
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "prefill_tokens_per_s": round(best_prefill, 2),
        "decode_tokens_per_s": round(best_decode, 2),
        "load_average": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
