"""Kernel batching: aggregate greedy decode tokens/s at 1, 4 and 8 concurrent streams on the
embedded model, decoded together in one llama.cpp context (``kernel/batching.py``), against the
same streams decoded one after another (what the kernel's serving path does today: one request
at a time). The peer the issue names, llama.cpp's own server with as many parallel slots, is not
measured here (it is not built on this machine).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_batching.py --tokens 64 --runs 3
"""

from __future__ import annotations

import argparse
import statistics

import llama_cpp

from _common import ensure_weights
from sovereign.kernel.batching import BatchedDecoder

TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "a desert", "a forest", "a train", "winter"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    llm = llama_cpp.Llama(str(ensure_weights()), n_ctx=512, n_threads=args.threads, verbose=False)
    prompts = [llm.tokenize(f"Write a short poem about {t}.\n".encode()) for t in TOPICS]
    single = BatchedDecoder(llm, streams=1, n_ctx_per_stream=512)
    print("| streams | together: aggregate tok/s | one after another: tok/s | ratio | vs 1 stream | same tokens |")
    print("|---|---|---|---|---|---|")
    base = None
    for k in (1, 4, 8):
        decoder = BatchedDecoder(llm, streams=k, n_ctx_per_stream=512)
        together, alone, same = [], [], 0
        for _ in range(args.runs):
            r = decoder.generate(prompts[:k], args.tokens, stop_at_eog=False)
            together.append(r.decoded / r.decode_s)
            done, took, outs = 0, 0.0, []
            for p in prompts[:k]:
                s = single.generate([p], args.tokens, stop_at_eog=False)
                done, took = done + s.decoded, took + s.decode_s
                outs.append(s.tokens[0])
            alone.append(done / took)
            same = sum(a == b for a, b in zip(r.tokens, outs))
        decoder.close()
        t, a = statistics.median(together), statistics.median(alone)
        base = base or t
        print(f"| {k} | {t:.1f} | {a:.1f} | **{t / a:.2f}×** | {t / base:.2f}× | {same}/{k} |", flush=True)
    single.close()


if __name__ == "__main__":
    main()
