"""Decode tokens/s through sovereign's streaming HTTP API vs raw llama-cpp-python, same model,
prompt, greedy sampling and thread count, measured in the same run. Goal: ratio >= 0.97.

Run: .venv/bin/python benchmarks/bench_decode.py [--runs 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _common import Server, ensure_weights, make_home, median, stream_chat

PROMPT = "Write a detailed, step-by-step explanation of how a hash map works, with an example in Python."


def raw_llama(tokens: int) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(str(ensure_weights()), n_ctx=4096, n_threads=os.cpu_count(), n_batch=512, verbose=False)
    messages = [{"role": "user", "content": PROMPT}]
    stamps = []
    for _chunk in llm.create_chat_completion(messages, max_tokens=tokens, temperature=0, repeat_penalty=1.05,
                                             top_k=20, top_p=0.8, stream=True):
        stamps.append(time.perf_counter())
    llm.close()
    content_stamps = stamps[1:-1]  # first chunk carries only the role, last only finish_reason
    return (len(content_stamps) - 1) / (content_stamps[-1] - content_stamps[0])


def sovereign(server: Server, tokens: int) -> float:
    body = {"model": "qwen2.5-coder-0.5b-instruct", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": tokens, "temperature": 0}
    stamps, usage = stream_chat(server, body)
    completion = usage.get("completion_tokens", 0)
    # Tokens decoded between the first and the last content chunk.
    return (completion - 1) / (stamps[-1] - stamps[0]) if completion > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    ensure_weights()
    home = make_home()
    raw, ours = [], []
    with Server(home) as server:
        sovereign(server, 8)  # warm-up
        for run in range(args.runs):
            ours.append(sovereign(server, args.tokens))
            raw.append(raw_llama(args.tokens))
            print(f"run {run + 1}: sovereign {ours[-1]:.2f} tok/s, raw llama-cpp-python {raw[-1]:.2f} tok/s")
    ratio = median(ours) / median(raw)
    print(json.dumps({"benchmark": "decode_tokens_per_second", "runs": args.runs, "max_tokens": args.tokens,
                      "sovereign_median": round(median(ours), 2), "raw_llama_cpp_median": round(median(raw), 2),
                      "ratio": round(ratio, 3), "goal": ">= 0.97"}))


if __name__ == "__main__":
    main()
