"""Shared fixtures: a private home per test, and the real embedded model (assembled once)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sovereign.config import DEFAULT_MODEL, TOOLS_MODEL, default_models_dir, load_settings
from sovereign.kernel.registry import ModelRegistry
from sovereign.kernel.weights import ensure_weights

REPO = Path(__file__).resolve().parent.parent
# The machine-wide weights cache every home uses (assembled once, verified, read-only use);
# SOVEREIGN_TEST_MODELS_DIR points the tests at another one.
SHARED_MODELS = Path(os.environ.get("SOVEREIGN_TEST_MODELS_DIR") or default_models_dir())


def shared_registry(models_dir: Path = SHARED_MODELS) -> ModelRegistry:
    """The built-in catalogue with its weights in ``models_dir``."""
    settings = load_settings(REPO / ".cache" / "bootstrap-home")
    return ModelRegistry(list(ModelRegistry.load(settings)), models_dir)


def ensure_shared(name: str) -> Path:
    """Assemble (under the cache's lock, atomically) or verify the weights of ``name``."""
    registry = shared_registry()
    spec = registry.get(name)
    ensure_weights(spec, registry.weights_path(spec))
    return registry.weights_path(spec)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    ensure_shared(DEFAULT_MODEL)
    return SHARED_MODELS


@pytest.fixture
def home(tmp_path, monkeypatch, models_dir) -> Path:
    """A fresh ``SOVEREIGN_HOME`` whose config points at the shared, verified weights."""
    root = make_home(tmp_path / "home", models_dir)
    monkeypatch.setenv("SOVEREIGN_HOME", str(root))
    return root


def _load_embedded(name: str, prefix_dir: Path):
    from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions

    path = ensure_shared(name)
    model = LlamaCppModel(shared_registry().get(name), path, LlamaOptions(n_ctx=4096), prefix_cache_dir=prefix_dir)
    model.load()
    return model


@pytest.fixture(scope="session")
def embedded_model(models_dir, tmp_path_factory):
    """The real instant-tier model (0.5B), loaded once per test session (prefix cache in a temp dir)."""
    model = _load_embedded(DEFAULT_MODEL, tmp_path_factory.mktemp("prefix-cache"))
    yield model
    model.close()


@pytest.fixture(scope="session")
def embedded_model_large(models_dir, tmp_path_factory):
    """The real tools-tier model (1.5B), assembled and loaded only by tests that ask for it."""
    model = _load_embedded(TOOLS_MODEL, tmp_path_factory.mktemp("prefix-cache-large"))
    yield model
    model.close()


@pytest.fixture
def run_async():
    """Run a coroutine to completion in a fresh event loop."""
    return lambda coro: asyncio.run(coro)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """A real ``sovereign serve`` process on loopback, with its own home."""

    def __init__(self, home: Path, api_key: str, port: int | None = None) -> None:
        self.home = home
        self.api_key = api_key
        self.port = port or free_port()
        self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> LiveServer:
        import subprocess
        import sys
        import time

        import httpx

        env = {**os.environ, "SOVEREIGN_HOME": str(self.home), "SOVEREIGN_API_KEY": self.api_key}
        self.log = open(self.home / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sovereign.cli.main", "serve", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except Exception:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.log.close()


def make_home(root: Path, models_dir: Path, extra_config: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(f'[kernel]\nmodels_dir = "{models_dir}"\nn_ctx = 4096\n{extra_config}')
    return root


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, models_dir):
    server = LiveServer(make_home(tmp_path_factory.mktemp("live") / "home", models_dir), "sk-test-admin-key-0123456789")
    server.start()
    yield server
    server.stop()


ADMIN_KEY = "sk-test-admin-key-0123456789"


def open_api_services(home: Path, extra_config: str = ""):
    """Services for in-process API tests: a fresh home whose default model is the echoing
    ``TestModel`` double (no weights loaded), and an admin key ``ADMIN_KEY``."""
    from sovereign.server.bootstrap import bootstrap_admin_key
    from sovereign.services import Services
    from sovereign.testing import TestModel, serve_every_tier

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(extra_config)
    services = Services.open(load_settings(home))
    serve_every_tier(services, TestModel())  # deterministic double
    bootstrap_admin_key(services, ADMIN_KEY)
    return services


@pytest.fixture
def api(tmp_path, monkeypatch):
    """(TestClient, Services) around ``create_app`` with the TestModel double as default model."""
    from fastapi.testclient import TestClient

    from sovereign.server.app import create_app

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "api-home")
    with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client, services
    services.close()
