"""Shared fixtures: a private home per test, and the real embedded model (assembled once)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sovereign.config import DEFAULT_MODEL, load_settings
from sovereign.kernel.registry import ModelRegistry
from sovereign.kernel.weights import ensure_weights

REPO = Path(__file__).resolve().parent.parent
# Weights are assembled once per checkout and shared by every test home (read-only use).
SHARED_MODELS = Path(os.environ.get("SOVEREIGN_TEST_MODELS_DIR", REPO / ".cache" / "models"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    settings = load_settings(REPO / ".cache" / "bootstrap-home")
    registry = ModelRegistry(list(ModelRegistry.load(settings)), SHARED_MODELS)
    spec = registry.get(DEFAULT_MODEL)
    ensure_weights(spec, registry.weights_path(spec))
    return SHARED_MODELS


@pytest.fixture
def home(tmp_path, monkeypatch, models_dir) -> Path:
    """A fresh ``SOVEREIGN_HOME`` whose config points at the shared, verified weights."""
    root = tmp_path / "home"
    root.mkdir()
    (root / "config.toml").write_text(f'[kernel]\nmodels_dir = "{models_dir}"\nn_ctx = 4096\n')
    monkeypatch.setenv("SOVEREIGN_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def embedded_model(models_dir, tmp_path_factory):
    """The real embedded model, loaded once per test session (prefix cache in a temp dir)."""
    from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions

    settings = load_settings(REPO / ".cache" / "bootstrap-home")
    registry = ModelRegistry(list(ModelRegistry.load(settings)), models_dir)
    spec = registry.get(DEFAULT_MODEL)
    model = LlamaCppModel(spec, registry.weights_path(spec), LlamaOptions(n_ctx=4096),
                          prefix_cache_dir=tmp_path_factory.mktemp("prefix-cache"))
    model.load()
    yield model
    model.close()


@pytest.fixture
def run_async():
    """Run a coroutine to completion in a fresh event loop."""
    return lambda coro: asyncio.run(coro)
