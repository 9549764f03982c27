"""An exact in-memory vector index: a float32 matrix searched with one matrix-vector product.

Vectors are unit length, so the dot product is the cosine similarity. Each row carries an
integer scope code (e.g. owner) and an optional second code (e.g. agent) so a search only sees
its own rows. Exact search over 100,000 x 384 floats is a few milliseconds on one core, and it
lets the vectors stay encrypted in the database (they are decrypted only into this index).

Why not sqlite-vec: the CPython build here is compiled without loadable SQLite extensions
(``sqlite3.Connection.enable_load_extension`` does not exist), and a ``vec0`` table would also
keep the vectors — which leak meaning — in plain form on disk.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VectorIndex"]


class VectorIndex:
    """Rows keyed by an integer id; ``search`` returns ``(id, score)`` best first."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._scope = np.zeros(capacity, dtype=np.int64)
        self._sub = np.zeros(capacity, dtype=np.int64)
        self._size = 0
        self._position: dict[int, int] = {}

    def __len__(self) -> int:
        return self._size

    def __contains__(self, row_id: int) -> bool:
        return row_id in self._position

    def _grow(self, needed: int) -> None:
        capacity = len(self._ids)
        if needed <= capacity:
            return
        new = max(needed, capacity * 2)
        for name in ("_vectors", "_ids", "_scope", "_sub"):
            old = getattr(self, name)
            grown = np.zeros((new, *old.shape[1:]), dtype=old.dtype)
            grown[: self._size] = old[: self._size]
            setattr(self, name, grown)

    def add(self, row_id: int, vector: np.ndarray, scope: int = 0, sub: int = 0) -> None:
        if row_id in self._position:
            self.remove(row_id)
        self._grow(self._size + 1)
        at = self._size
        self._vectors[at] = vector
        self._ids[at], self._scope[at], self._sub[at] = row_id, scope, sub
        self._position[row_id] = at
        self._size += 1

    def add_many(self, ids: np.ndarray, vectors: np.ndarray, scopes: np.ndarray, subs: np.ndarray) -> None:
        """Bulk add (ids must be new)."""
        count = len(ids)
        self._grow(self._size + count)
        start, end = self._size, self._size + count
        self._vectors[start:end], self._ids[start:end] = vectors, ids
        self._scope[start:end], self._sub[start:end] = scopes, subs
        for offset, row_id in enumerate(ids.tolist()):
            self._position[row_id] = start + offset
        self._size = end

    def remove(self, row_id: int) -> None:
        at = self._position.pop(row_id, None)
        if at is None:
            return
        last = self._size - 1
        if at != last:
            moved = int(self._ids[last])
            self._vectors[at], self._ids[at] = self._vectors[last], moved
            self._scope[at], self._sub[at] = self._scope[last], self._sub[last]
            self._position[moved] = at
        self._size = last

    def vector(self, row_id: int) -> np.ndarray | None:
        at = self._position.get(row_id)
        return None if at is None else self._vectors[at]

    def search(self, query: np.ndarray, k: int, scope: int | None = None,
               sub: int | None = None) -> list[tuple[int, float]]:
        if self._size == 0 or k <= 0:
            return []
        scores = self._vectors[: self._size] @ query.astype(np.float32)
        if scope is not None or sub is not None:
            keep = np.ones(self._size, dtype=bool)
            if scope is not None:
                keep &= self._scope[: self._size] == scope
            if sub is not None:
                keep &= self._sub[: self._size] == sub
            scores = np.where(keep, scores, -np.inf)
        k = min(k, self._size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self._ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]
