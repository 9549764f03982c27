"""An exact in-memory vector index: one contiguous float32 matrix per scope, one matrix-vector
product per searched scope.

Vectors are unit length, so the dot product is the cosine similarity. Rows live in the matrix of
their scope (e.g. an owner and agent), so a search reads only the rows it may return — no mask,
no wasted products — and the top ``k`` comes from ``np.argpartition``. Exact search over
100,000 x 384 floats is about 6 ms on one core, and it lets the vectors stay encrypted in the
database (they are decrypted only into this index).

Why not sqlite-vec: the CPython build here is compiled without loadable SQLite extensions
(``sqlite3.Connection.enable_load_extension`` does not exist), and a ``vec0`` table would also
keep the vectors — which leak meaning — in plain form on disk.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

__all__ = ["VectorIndex"]


class _Scope:
    """The rows of one scope: a float32 matrix grown by doubling, ids beside it."""

    __slots__ = ("vectors", "ids", "size", "position")

    def __init__(self, dim: int, capacity: int) -> None:
        self.vectors = np.zeros((capacity, dim), dtype=np.float32)
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.size = 0
        self.position: dict[int, int] = {}

    def reserve(self, needed: int) -> None:
        if needed <= len(self.ids):
            return
        new = max(needed, 2 * len(self.ids))
        vectors = np.zeros((new, self.vectors.shape[1]), dtype=np.float32)
        ids = np.zeros(new, dtype=np.int64)
        vectors[: self.size], ids[: self.size] = self.vectors[: self.size], self.ids[: self.size]
        self.vectors, self.ids = vectors, ids

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors[: self.size] @ query
        if k < self.size:
            top = np.argpartition(scores, self.size - k)[self.size - k:]
            return self.ids[top], scores[top]
        return self.ids[: self.size], scores


class VectorIndex:
    """Rows keyed by an integer id, each in one scope; ``search`` returns ``(id, score)`` best first."""

    def __init__(self, dim: int, capacity: int = 256) -> None:
        self.dim = dim
        self._capacity = capacity
        self._scopes: dict[Hashable, _Scope] = {}
        self._scope_of: dict[int, Hashable] = {}

    def __len__(self) -> int:
        return len(self._scope_of)

    def __contains__(self, row_id: int) -> bool:
        return row_id in self._scope_of

    def scopes(self) -> list[Hashable]:
        """The scopes that hold at least one row."""
        return [key for key, scope in self._scopes.items() if scope.size]

    def _scope(self, key: Hashable) -> _Scope:
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope(self.dim, self._capacity)
        return scope

    def add(self, scope: Hashable, row_id: int, vector: np.ndarray) -> None:
        self.add_many(scope, np.array([row_id], dtype=np.int64), np.asarray(vector, np.float32)[None, :])

    def add_many(self, scope: Hashable, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows to ``scope`` (an id already present anywhere is moved)."""
        for row_id in ids.tolist():
            if row_id in self._scope_of:
                self.remove(row_id)
        rows = self._scope(scope)
        start, end = rows.size, rows.size + len(ids)
        rows.reserve(end)
        rows.vectors[start:end], rows.ids[start:end] = vectors, ids
        for offset, row_id in enumerate(ids.tolist()):
            rows.position[row_id] = start + offset
            self._scope_of[row_id] = scope
        rows.size = end

    def remove(self, row_id: int) -> None:
        key = self._scope_of.pop(row_id, None)
        if key is None:
            return
        rows = self._scopes[key]
        at, last = rows.position.pop(row_id), rows.size - 1
        if at != last:
            moved = int(rows.ids[last])
            rows.vectors[at], rows.ids[at] = rows.vectors[last], moved
            rows.position[moved] = at
        rows.size = last

    def vector(self, row_id: int) -> np.ndarray | None:
        key = self._scope_of.get(row_id)
        if key is None:
            return None
        rows = self._scopes[key]
        return rows.vectors[rows.position[row_id]]

    def search(self, query: np.ndarray, k: int, scopes: Iterable[Hashable]) -> list[tuple[int, float]]:
        """The ``k`` rows of ``scopes`` most similar to ``query``."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        found = [self._scopes[key].search(query, k) for key in scopes
                 if key in self._scopes and self._scopes[key].size and k > 0]
        if not found:
            return []
        ids = np.concatenate([f[0] for f in found]) if len(found) > 1 else found[0][0]
        scores = np.concatenate([f[1] for f in found]) if len(found) > 1 else found[0][1]
        order = np.argsort(-scores, kind="stable")[:k]
        return list(zip(ids[order].tolist(), scores[order].tolist(), strict=True))
