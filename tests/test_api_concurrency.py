"""200 concurrent clients, no dropped connection: every request ends in an HTTP answer.

The load is ``benchmarks/bench_concurrency.py``'s: each client on its own connection sends a chat
with a tiny output (half of them streamed), ``GET /v1/models``, ``GET /health``, then after an
idle pause a second chat on the same kept-alive connection. Dropped = reset, closed without an
answer, or a stream cut short.

The cause found: uvicorn's 5 s keep-alive timer equals httpx's/the OpenAI SDK's 5 s pool expiry,
and under load the event loop lags past it, so the server closed connections whose next request
was already sent ("Server disconnected without sending a response": 79 of 800 here before the
fix). ``sovereign.server.run`` keeps connections 75 s.

- unit: the real ``sovereign serve`` HTTP stack (``run_server`` + ``create_app``) in its own
  process, with the echoing ``TestModel`` double as model: all 200 answer, every request 200;
- integration: the real ``sovereign serve`` with the embedded model and ``max_queue = 16``:
  chats beyond the queue get a clean 503 in the error shape with ``Retry-After``, never a drop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import ADMIN_KEY, REPO, LiveServer, free_port, make_home

_spec = importlib.util.spec_from_file_location("bench_concurrency", REPO / "benchmarks" / "bench_concurrency.py")
bench = sys.modules["bench_concurrency"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CLIENTS = 200


@pytest.fixture
def fast_server(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("")
    port = free_port()
    env = {**os.environ, "SOVEREIGN_HOME": str(home), "SOVEREIGN_API_KEY": ADMIN_KEY,
           "PYTHONPATH": str(REPO / "src")}
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "servers" / "fast_serve.py"), str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(30)
    log.close()


@pytest.mark.timeout(300)
def test_200_concurrent_clients_all_get_answers(fast_server):
    result = asyncio.run(bench.hammer(fast_server, ADMIN_KEY, CLIENTS))
    assert not result.dropped, f"{len(result.dropped)} dropped: {result.dropped[:5]}"
    assert not result.bad_errors, result.bad_errors[:5]
    assert result.statuses == {"chat 200": CLIENTS, "stream 200": CLIENTS, "models 200": CLIENTS,
                               "health 200": CLIENTS}, result.summary()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_200_concurrent_clients_on_the_real_model_overflow_cleanly(tmp_path, models_dir):
    server = LiveServer(make_home(tmp_path / "home", models_dir, "[server]\nmax_queue = 16\n"), ADMIN_KEY)
    server.start()
    try:
        result = asyncio.run(bench.hammer(f"http://127.0.0.1:{server.port}", ADMIN_KEY, CLIENTS, second_chat=False))
    finally:
        server.stop()
    assert not result.dropped, f"{len(result.dropped)} dropped: {result.dropped[:5]}"
    assert not result.bad_errors, result.bad_errors[:5]  # every 503 in the error shape, with Retry-After
    chats = {k: v for k, v in result.statuses.items() if k.startswith(("chat", "stream"))}
    assert set(chats) <= {"chat 200", "chat 503", "stream 200", "stream 503"}, result.summary()
    assert chats.get("chat 200", 0) + chats.get("stream 200", 0) >= 16, result.summary()
    assert sum(chats.values()) == CLIENTS
    assert result.statuses["models 200"] == CLIENTS and result.statuses["health 200"] == CLIENTS
