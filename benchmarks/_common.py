"""Shared benchmark helpers: a temp home with the shared weights, a sovereign server process, stats."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("SOVEREIGN_TEST_MODELS_DIR", REPO / ".cache" / "models"))
MODEL_FILE = MODELS / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
API_KEY = "sk-bench-key-000000000000"


def ensure_weights(model: str | None = None) -> Path:
    """The GGUF of ``model`` (default: the 0.5B) in the shared folder, assembled when missing."""
    path = MODEL_FILE if model is None else MODELS / f"{model}-q4_k_m.gguf"
    if not path.exists():
        names = [] if model is None else [model]
        subprocess.run([sys.executable, "-m", "sovereign.cli.main", "weights", "assemble", *names], check=True,
                       env={**os.environ, "SOVEREIGN_HOME": str(make_home())})
    return path


def make_home(extra: str = "") -> Path:
    home = Path(tempfile.mkdtemp(prefix="sovereign-bench-"))
    (home / "config.toml").write_text(f'[kernel]\nmodels_dir = "{MODELS}"\nn_ctx = 4096\n{extra}')
    return home


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, home: Path, argv: list[str] | None = None) -> None:
        self.home, self.port = home, free_port()
        self.argv = argv or [sys.executable, "-m", "sovereign.cli.main", "serve"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        env = {**os.environ, "SOVEREIGN_HOME": str(self.home), "SOVEREIGN_API_KEY": API_KEY}
        self.process = subprocess.Popen([*self.argv, "--port", str(self.port)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def stream_chat(server: Server, body: dict) -> tuple[list[float], dict]:
    """Stream one chat completion; returns the arrival time of each content chunk and the usage."""
    import json

    stamps, usage = [], {}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True,
                      "stream_options": {"include_usage": True}}, timeout=300,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
    return stamps, usage
