"""llama.cpp's own OpenAI-compatible server (``python -m llama_cpp.server``, from the
llama-cpp-python package) on a loopback port, as a second, real backend: started, killed with
SIGKILL (a crash, not a shutdown) and started again on the same port."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx


class LlamaServer:
    def __init__(self, model_file: Path, port: int, log: Path, alias: str = "peer-model") -> None:
        self.model_file, self.port, self.log, self.alias = model_file, port, log, alias
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> LlamaServer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_file), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", "2048", "--model_alias", self.alias],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-answer, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
