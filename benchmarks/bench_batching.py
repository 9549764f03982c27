"""Kernel continuous batching: aggregate decode tokens/s with 1, 4 and 8 concurrent streams on the
embedded model, against llama.cpp's own ``llama-server`` with the same number of parallel slots
(built from the llama.cpp sources in the llama-cpp-python sdist: ``benchmarks/_llama_server.py``).

Each side gets the same k chat requests at once (temperature 0, ``max_tokens`` each, distinct
prompts asking for long answers): the kernel in-process through ``LlamaCppModel`` with
``parallel = k`` (k = 1 is the serial path), llama-server over loopback HTTP with ``-np k``, a
unified KV cache and the same thread count. Aggregate rate = completion tokens of all k replies ÷
wall time from sending the first request to the last reply. The prompts (~40 tokens) repeat
across rounds and both sides keep them cached (the kernel's slots, llama-server's
``cache_prompt``), so after the warm-up round the figure is nearly all decoding. Medians of
``--runs`` rounds.

    nice -n 19 env PYTHONPATH=src .venv/bin/python benchmarks/bench_batching.py --tokens 64 --runs 3
    (add --large for the 1.5B too; --no-peer skips llama-server)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

from _common import MODELS, ensure_weights, free_port
from _llama_server import LlamaServer
from sovereign.config import DEFAULT_MODEL, TOOLS_MODEL, load_settings
from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.registry import ModelRegistry

TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "a desert", "a forest", "a train", "winter"]
N_CTX = 2048


def _prompt(i: int) -> str:
    return f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}."


async def _kernel_round(model: LlamaCppModel, k: int, tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    replies = await asyncio.gather(*[
        model.complete(ChatRequest(model=model.name, messages=[Message(role="user", content=_prompt(i))],
                                   max_tokens=tokens, temperature=0)) for i in range(k)])
    return sum(r.usage.completion_tokens for r in replies), time.perf_counter() - started


async def _server_round(base_url: str, k: int, tokens: int) -> tuple[int, float]:
    async with httpx.AsyncClient(timeout=3600) as client:
        started = time.perf_counter()
        replies = await asyncio.gather(*[
            client.post(f"{base_url}/v1/chat/completions", json={
                "messages": [{"role": "user", "content": _prompt(i)}], "max_tokens": tokens, "temperature": 0,
                "cache_prompt": True}) for i in range(k)])
        wall = time.perf_counter() - started
    return sum(r.raise_for_status().json()["usage"]["completion_tokens"] for r in replies), wall


def _rate(rounds: list[tuple[int, float]]) -> float:
    return statistics.median(done / wall for done, wall in rounds)


def _kernel(spec, path: Path, k: int, args) -> float:
    model = LlamaCppModel(spec, path, LlamaOptions(n_ctx=N_CTX, n_threads=args.threads, parallel=k))
    model.load()
    try:
        asyncio.run(_kernel_round(model, 1, 4))  # warm-up
        rounds = [asyncio.run(_kernel_round(model, k, args.tokens)) for _ in range(args.runs)]
        if model.engine is not None:
            stats = model.engine.stats
            print(f"    kernel k={k}: {stats.shared_steps}/{stats.decode_steps} decode steps carried several "
                  f"sequences (at most {stats.most_sequences})", file=sys.stderr)
        return _rate(rounds)
    finally:
        model.close()


def _peer(path: Path, k: int, args) -> float:
    with LlamaServer(path, port=free_port(), parallel=k, n_ctx_per_slot=N_CTX, threads=args.threads) as server:
        asyncio.run(_server_round(server.base_url, 1, 4))
        return _rate([asyncio.run(_server_round(server.base_url, k, args.tokens)) for _ in range(args.runs)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of each request")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--large", action="store_true", help="also the 1.5B model")
    parser.add_argument("--no-peer", action="store_true", help="skip llama-server")
    args = parser.parse_args()
    ensure_weights()
    registry = ModelRegistry(list(ModelRegistry.load(load_settings(Path(__file__).parent.parent / ".cache" / "bench"))),
                             MODELS)
    names = [DEFAULT_MODEL, TOOLS_MODEL] if args.large else [DEFAULT_MODEL]
    print(f"max_tokens {args.tokens}, {args.threads} threads, median of {args.runs} rounds\n")
    print("| model | streams | kernel: aggregate tok/s | kernel vs 1 stream | llama-server: aggregate tok/s | kernel ÷ llama-server |")
    print("|---|---|---|---|---|---|")
    for name in names:
        spec = registry.get(name)
        path = registry.weights_path(spec)
        base = None
        for k in (int(s) for s in args.streams.split(",")):
            ours = _kernel(spec, path, k, args)
            base = base or ours
            peer = None if args.no_peer else _peer(path, k, args)
            peer_cells = "n/a | n/a" if peer is None else f"{peer:.1f} | **{ours / peer:.2f}**"
            print(f"| {name} | {k} | {ours:.1f} | {ours / base:.2f}× | {peer_cells} |", flush=True)


if __name__ == "__main__":
    main()
