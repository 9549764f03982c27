"""Time to first token for a request sharing a ~2,000-token prefix with an earlier one, vs the
same request cold — in the same server process, and again after a server restart (the KV
snapshot is reloaded from disk). Goal: warm >= 20x faster than cold, also after a restart.

Run: .venv/bin/python benchmarks/bench_prefix_cache.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from _common import Server, ensure_weights, make_home, median, stream_chat

WORDS = "river stone lantern copper meadow signal harbor violet engine orchard summit".split()


def long_prefix(seed: int) -> str:
    rng = random.Random(seed)
    rules = [f"Rule {i}: when asked about {rng.choice(WORDS)} {rng.choice(WORDS)}, answer with care and cite rule {i}."
             for i in range(95)]
    return "You are a careful assistant for project " + str(seed) + ".\n" + "\n".join(rules)


def ttft(server: Server, system: str, question: str) -> tuple[float, int, int]:
    body = {"model": "qwen2.5-coder-0.5b-instruct", "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    started = time.perf_counter()
    stamps, usage = stream_chat(server, body)
    first = stamps[0] if stamps else time.perf_counter()
    return (first - started) * 1000, usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ensure_weights()
    home = make_home()
    seeds = [random.randrange(10**9) for _ in range(args.runs)]
    cold, warm, restarted, prompt_sizes = [], [], [], []
    with Server(home) as server:
        ttft(server, "Warm-up.", "Hi")
        for seed in seeds:
            c, prompt, cached = ttft(server, long_prefix(seed), "Question A: what is rule 3?")
            w, _, warm_cached = ttft(server, long_prefix(seed), "Question B: what is rule 7?")
            cold.append(c), warm.append(w), prompt_sizes.append(prompt)
            print(f"prefix {seed}: {prompt} prompt tokens; cold {c:.1f} ms (cached {cached}), warm {w:.1f} ms (cached {warm_cached})")
    with Server(home) as server:  # a new process: only the on-disk snapshots remain
        for seed in seeds:
            r, _, cached = ttft(server, long_prefix(seed), "Question C: what is rule 9?")
            restarted.append(r)
            print(f"prefix {seed} after restart: {r:.1f} ms (cached {cached})")
    print(json.dumps({"benchmark": "prefix_cache_ttft_ms", "runs": args.runs, "prompt_tokens_median": median(prompt_sizes),
                      "cold_median_ms": round(median(cold), 1), "warm_median_ms": round(median(warm), 1),
                      "after_restart_median_ms": round(median(restarted), 1),
                      "speedup_warm": round(median(cold) / median(warm), 1),
                      "speedup_after_restart": round(median(cold) / median(restarted), 1), "goal": ">= 20x"}))


if __name__ == "__main__":
    main()
