"""Persistent prefix (prompt) cache for the embedded backend.

After a request, the KV state of its token sequence is saved to disk (one file per snapshot,
the tokens beside it). A later request — in this process or after a restart — that shares a
long prefix with a snapshot loads it and evaluates only the tokens after the shared prefix.
Snapshots are kept per model hash and evicted least-recently-used beyond a size budget.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MIN_GAIN = 16  # a snapshot must beat the in-memory prefix by this many tokens to be loaded
_MIN_NEW = 64  # a new snapshot must extend the best existing one by this many tokens


@dataclass(slots=True)
class _Snapshot:
    state_path: Path
    tokens: np.ndarray

    @property
    def size(self) -> int:
        return self.state_path.stat().st_size if self.state_path.exists() else 0


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


class PrefixCache:
    """Snapshots of sequence 0 of a llama.cpp context, keyed by their token sequences."""

    def __init__(self, directory: Path, *, max_bytes: int, min_tokens: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        directory.mkdir(parents=True, exist_ok=True)
        self._snapshots: list[_Snapshot] = []
        for tokens_path in sorted(directory.glob("*.tokens.npy")):
            state = tokens_path.with_name(tokens_path.name.replace(".tokens.npy", ".kv"))
            if state.exists():
                self._snapshots.append(_Snapshot(state, np.load(tokens_path)))
            else:
                tokens_path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._snapshots)

    def best(self, tokens: np.ndarray) -> tuple[_Snapshot | None, int]:
        best, best_len = None, 0
        for snap in self._snapshots:
            shared = common_prefix(snap.tokens, tokens)
            if shared > best_len:
                best, best_len = snap, shared
        return best, best_len

    def restore(self, llm, tokens: list[int], in_memory_prefix: int) -> int:
        """Load the best snapshot into ``llm`` if it beats what is in memory; returns tokens restored."""
        import llama_cpp

        wanted = np.asarray(tokens, dtype=np.int32)
        snap, shared = self.best(wanted)
        if snap is None or shared < self.min_tokens or shared <= in_memory_prefix + _MIN_GAIN:
            return 0
        capacity = len(snap.tokens)
        if capacity > llm.n_ctx():
            return 0
        out = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        llm._ctx.kv_cache_clear()
        read = llama_cpp.llama_state_seq_load_file(
            llm._ctx.ctx, str(snap.state_path).encode(), 0, out, capacity, ctypes.byref(count)
        )
        if read == 0 or count.value != capacity:
            llm._ctx.kv_cache_clear()
            llm.n_tokens = 0
            self._drop(snap)
            return 0
        llm.input_ids[:capacity] = snap.tokens
        llm.n_tokens = capacity
        llm._requires_eval = True
        os.utime(snap.state_path)
        return shared

    def save(self, llm) -> bool:
        """Snapshot the sequence now in ``llm`` if it is long and new enough."""
        import llama_cpp

        n = llm.n_tokens
        if n < self.min_tokens or self.max_bytes <= 0:
            return False
        tokens = np.array(llm.input_ids[:n], dtype=np.int32)
        _, shared = self.best(tokens)
        if shared >= n - _MIN_NEW:
            return False
        key = hashlib.sha256(tokens.tobytes()).hexdigest()[:32]
        state_path = self.directory / f"{key}.kv"
        partial = self.directory / f"{key}.kv.partial"
        array = (llama_cpp.llama_token * n)(*tokens.tolist())
        written = llama_cpp.llama_state_seq_save_file(llm._ctx.ctx, str(partial).encode(), 0, array, n)
        if written == 0:
            partial.unlink(missing_ok=True)
            return False
        np.save(self.directory / f"{key}.tokens.npy", tokens)
        os.replace(partial, state_path)
        self._snapshots.append(_Snapshot(state_path, tokens))
        self._evict()
        return True

    def _drop(self, snap: _Snapshot) -> None:
        self._snapshots.remove(snap)
        snap.state_path.unlink(missing_ok=True)
        snap.state_path.with_name(snap.state_path.name.replace(".kv", ".tokens.npy")).unlink(missing_ok=True)

    def _evict(self) -> None:
        by_age = sorted(self._snapshots, key=lambda s: s.state_path.stat().st_mtime)
        total = sum(s.size for s in by_age)
        while by_age and total > self.max_bytes:
            oldest = by_age.pop(0)
            total -= oldest.size
            self._drop(oldest)
