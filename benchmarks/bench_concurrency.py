"""Many concurrent clients against a real ``sovereign serve``: does every request get an answer?

Each client opens its own connection and sends, at the same moment as the others: one chat
completion with a tiny output (max_tokens 1-4; every other one streamed), then ``GET /v1/models``
and ``GET /health``, then a second chat after an idle pause (so pooled keep-alive connections
are reused after sitting idle, as real clients do). Every request must end in an HTTP answer:
200, or a clean 503 in the error shape when the model's queue is full. A connection reset, a
response cut short or no answer at all counts as *dropped*.

    .venv/bin/python benchmarks/bench_concurrency.py --clients 200 [--max-queue 256] [--repeats 3]
    .venv/bin/python benchmarks/bench_concurrency.py --fast --clients 200   # echo model, vs uvicorn defaults

``--fast`` serves the echoing ``TestModel`` double (tests/servers/fast_serve.py) twice, with
sovereign's ``run_server`` settings and with plain uvicorn defaults (the peer), same load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

CHAT_MODEL = "qwen2.5-coder-0.5b-instruct"


@dataclass
class LoadResult:
    clients: int
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)  # "chat 200", "chat 503", "models 200", ...
    dropped: list[str] = field(default_factory=list)  # what went wrong, per dropped request
    bad_errors: list[str] = field(default_factory=list)  # 4xx/5xx not in the error shape
    chat_latencies: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.dropped)

    def summary(self) -> dict:
        lat = sorted(self.chat_latencies) or [0.0]
        return {"clients": self.clients, "requests": self.requests, "seconds": round(self.seconds, 2),
                "statuses": dict(sorted(self.statuses.items())), "dropped": len(self.dropped),
                "bad_errors": len(self.bad_errors), "chat_p50_s": round(statistics.median(lat), 2),
                "chat_max_s": round(lat[-1], 2)}


async def _chat(client: httpx.AsyncClient, index: int, result: LoadResult, stream: bool) -> None:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Say the number {index}."}],
            "max_tokens": 1 + index % 4, "temperature": 0, "stream": stream}
    started = time.perf_counter()
    if not stream:
        reply = await client.post("/v1/chat/completions", json=body)
        _record(result, "chat", reply.status_code, reply.text, reply.headers)
        if reply.status_code == 200 and not reply.json()["choices"][0]["finish_reason"]:
            result.dropped.append(f"chat {index}: no finish_reason")
    else:
        async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
            text = (await reply.aread()).decode()
        _record(result, "stream", reply.status_code, text, reply.headers)
        if reply.status_code == 200 and not text.rstrip().endswith("data: [DONE]"):
            result.dropped.append(f"stream {index}: cut short: {text[-200:]!r}")
    if reply.status_code == 200:
        result.chat_latencies.append(time.perf_counter() - started)


def _record(result: LoadResult, kind: str, status: int, text: str, headers: httpx.Headers) -> None:
    result.statuses[f"{kind} {status}"] += 1
    if status >= 400:
        try:
            error = json.loads(text)["error"]
            assert {"message", "type", "code", "param"} <= set(error)
            if status == 503:
                assert headers.get("retry-after")
        except (ValueError, KeyError, TypeError, AssertionError):
            result.bad_errors.append(f"{kind} {status}: {text[:200]}")


async def _one_client(base_url: str, key: str, index: int, result: LoadResult, start: asyncio.Event,
                      idle_s: float, second_chat: bool) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=httpx.Timeout(600.0)) as client:
        await start.wait()
        steps = [
            lambda: _chat(client, index, result, stream=index % 2 == 1),
            lambda: _get(client, "/v1/models", "models", result),
            lambda: _get(client, "/health", "health", result),
        ]
        if second_chat:
            steps += [
                lambda: asyncio.sleep(idle_s + random.random()),  # idle keep-alive connection, then reuse it
                lambda: _chat(client, index + 1, result, stream=index % 2 == 0),
            ]
        for step in steps:
            try:
                await step()
            except httpx.HTTPError as exc:  # reset, closed without an answer, cut short, timed out
                result.dropped.append(f"client {index}: {type(exc).__name__}: {exc}")


async def _get(client: httpx.AsyncClient, path: str, kind: str, result: LoadResult) -> None:
    reply = await client.get(path)
    _record(result, kind, reply.status_code, reply.text, reply.headers)


async def hammer(base_url: str, key: str, clients: int, idle_s: float = 5.0, second_chat: bool = True) -> LoadResult:
    """Run ``clients`` concurrent clients against ``base_url`` (no /v1 suffix); see the module doc."""
    result = LoadResult(clients)
    start = asyncio.Event()
    tasks = [asyncio.create_task(_one_client(base_url, key, i, result, start, idle_s, second_chat))
             for i in range(clients)]
    await asyncio.sleep(0.2)
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - began
    return result


def _fast_server(home, port: int, peer: bool):
    import os
    import subprocess
    from pathlib import Path

    from _common import API_KEY, REPO

    (home / "config.toml").write_text("")
    argv = [sys.executable, str(REPO / "tests" / "servers" / "fast_serve.py"), str(port)]
    env = {**os.environ, "SOVEREIGN_HOME": str(home), "SOVEREIGN_API_KEY": API_KEY,
           "PYTHONPATH": str(Path(REPO / "src"))}
    process = subprocess.Popen(argv + (["--uvicorn-defaults"] if peer else []), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("fast server did not start")


def main() -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _common import API_KEY, Server, ensure_weights, free_port, make_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--max-queue", type=int, default=None, help="[server] max_queue (default: the shipped 64)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="echo model; compare with uvicorn defaults")
    args = parser.parse_args()
    extra = f"[server]\nmax_queue = {args.max_queue}\n" if args.max_queue else ""
    for _ in range(args.repeats):
        if args.fast:
            for peer in (True, False):
                port = free_port()
                process = _fast_server(make_home(), port, peer)
                try:
                    result = asyncio.run(hammer(f"http://127.0.0.1:{port}", API_KEY, args.clients))
                finally:
                    process.terminate()
                    process.wait(30)
                _report("uvicorn defaults" if peer else "sovereign run_server", result)
            continue
        ensure_weights()
        with Server(make_home(extra)) as server:
            _report("sovereign serve (real model)", asyncio.run(hammer(server.url, API_KEY, args.clients)))


def _report(label: str, result: LoadResult) -> None:
    print(label, json.dumps(result.summary()), flush=True)
    for line in result.dropped[:5] + result.bad_errors[:5]:
        print("   ", line)


if __name__ == "__main__":
    main()
