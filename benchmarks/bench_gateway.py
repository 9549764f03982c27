"""Gateway overhead per request with a zero-latency backend: sovereign (auth, validation, spend
reservation, ledger, audit, metrics, OpenAI formatting) vs the same HTTP stack with none of it,
measured in the same run. Goal: median overhead <= 1 ms, p99 <= 5 ms.

Run: .venv/bin/python benchmarks/bench_gateway.py [--rounds 5] [--requests 500]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _common import API_KEY, free_port, median, percentile

HERE = Path(__file__).resolve().parent
BODY = {"model": "echo", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 8}


def start(kind: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [sys.executable, str(HERE / "_gateway_servers.py"), kind, str(port)]
    if kind == "sovereign":
        argv.append(tempfile.mkdtemp(prefix="sovereign-gw-"))
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY, timeout=1,
                       headers={"Authorization": f"Bearer {API_KEY}"})
            return process, port
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{kind} server did not start")


def latencies(port: int, count: int) -> list[float]:
    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        for _ in range(50):
            client.post("/v1/chat/completions", json=BODY)
        for _ in range(count):
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=BODY)
            out.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    ours_proc, ours_port = start("sovereign")
    bare_proc, bare_port = start("bare")
    medians, p99s = [], []
    try:
        for round_no in range(args.rounds):
            bare = latencies(bare_port, args.requests)
            ours = latencies(ours_port, args.requests)
            medians.append(median(ours) - median(bare))
            p99s.append(percentile(ours, 0.99) - percentile(bare, 0.99))
            print(f"round {round_no + 1}: sovereign median {median(ours):.3f} ms p99 {percentile(ours, 0.99):.3f} ms; "
                  f"bare median {median(bare):.3f} ms p99 {percentile(bare, 0.99):.3f} ms")
    finally:
        for process in (ours_proc, bare_proc):
            process.terminate()
            process.wait(timeout=10)
    print(json.dumps({"benchmark": "gateway_overhead_ms", "rounds": args.rounds, "requests_per_round": args.requests,
                      "median_overhead_ms": round(median(medians), 3), "p99_overhead_ms": round(median(p99s), 3),
                      "goal": "median <= 1 ms, p99 <= 5 ms"}))


if __name__ == "__main__":
    main()
