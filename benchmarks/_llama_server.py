"""llama.cpp's own ``llama-server``, built once from the llama.cpp sources that ship in the
llama-cpp-python sdist the kernel uses (same version, same CMake flags as the Makefile's wheel),
cached under ``~/.cache/sovereign/bin``; and a running instance of it for a benchmark.

Needs cmake and a C++ compiler (the same ones the Makefile's llama-cpp-python build needs).

    python benchmarks/_llama_server.py     # build (or find) it and print its path
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx

LLAMA_VER = "0.3.36"
CACHE = Path(os.environ.get("SOVEREIGN_BENCH_CACHE", Path.home() / ".cache" / "sovereign"))
BINARY = CACHE / "bin" / f"llama-server-{LLAMA_VER}"
CMAKE_FLAGS = ["-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DCMAKE_BUILD_TYPE=Release"]


def ensure_llama_server() -> Path:
    """The cached binary, built under ``nice -n 19`` when missing (tens of minutes on 2 cores)."""
    if BINARY.exists():
        return BINARY
    work = CACHE / "llama-server-src"
    work.mkdir(parents=True, exist_ok=True)
    sdist = work / f"llama_cpp_python-{LLAMA_VER}.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        f"llama-cpp-python=={LLAMA_VER}", "-d", str(work)], check=True)
    source = work / f"llama_cpp_python-{LLAMA_VER}" / "vendor" / "llama.cpp"
    if not source.exists():
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
    build = work / "build"
    nice = ["nice", "-n", "19"]
    subprocess.run([*nice, "cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS], check=True)
    subprocess.run([*nice, "cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 1)],
                   check=True)
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    (build / "bin" / "llama-server").replace(BINARY)
    return BINARY


class LlamaServer:
    """``llama-server`` on loopback with ``parallel`` slots (unified KV cache, like the kernel)."""

    def __init__(self, model: Path, *, port: int, parallel: int, n_ctx_per_slot: int, threads: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.command = [str(ensure_llama_server()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                        "-np", str(parallel), "-c", str(parallel * n_ctx_per_slot), "--kv-unified",
                        "-t", str(threads), "-tb", str(threads), "--no-webui", "-cb"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LlamaServer:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}: {' '.join(self.command)}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("llama-server did not become healthy within 300 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


if __name__ == "__main__":
    print(ensure_llama_server())
