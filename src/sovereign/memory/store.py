"""The memory store: encrypted facts, episodes and session summaries with hybrid search.

Layout on disk (see ``schema.py``): each item's text and embedding vector are AES-GCM
ciphertext; owner, agent, kind, source, session id, confidence and times are plain metadata.
Full-text search runs on FTS5 (BM25) over HMAC-keyed term hashes (``crypto.py``); vector search
runs on an exact in-memory index (``vectors.py``) decrypted from the database at first use and
refreshed when another process writes (a version counter in ``memory_state``). The two rankings
are fused by reciprocal rank (k = 60).

Write path for facts: a new fact with the same terms as an active fact of the same owner and
agent, or whose cosine with it is at least ``MERGE_SIMILARITY`` without sharing its subject, is
merged into it; one that shares its subject (a common word prefix covering half the shorter
fact) but ends differently and is at least ``CONTRADICT_SIMILARITY`` similar supersedes it — the older stays as history, out of search.
A session summary supersedes the previous summary of the same session. Episodes are appended.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sovereign.errors import InvalidRequestError, NotFoundError, UserError
from sovereign.memory import text as textmod
from sovereign.memory.crypto import MemoryCipher, load_key
from sovereign.memory.embeddings import Embedder
from sovereign.memory.models import KINDS, MemoryHit, MemoryItem, WriteResult
from sovereign.memory.schema import MIGRATIONS
from sovereign.memory.vectors import VectorIndex
from sovereign.store import Database

__all__ = ["MemoryStore", "MERGE_SIMILARITY", "CONTRADICT_SIMILARITY"]

MERGE_SIMILARITY = 0.9
CONTRADICT_SIMILARITY = 0.65
RRF_K = 60
CANDIDATES = 50
MAX_CONTENT = 20_000
_COLUMNS = ("n, id, owner, agent, kind, session, source, confidence, status, superseded_by, "
            "created_at, updated_at, content")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidRequestError(f"{what} must be a non-empty string of at most 200 characters", param=what)
    return value.strip()


def _same_subject(old: str, new: str) -> bool:
    a, b = textmod.words(old), textmod.words(new)
    if a == b:
        return False
    prefix = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        prefix += 1
    return prefix >= 2 and prefix * 2 >= min(len(a), len(b))


class MemoryStore:
    """Persistent, encrypted, owner-scoped agent memory over the shared ``Database``."""

    def __init__(self, db: Database, key: bytes, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder
        self.cipher = MemoryCipher(key)
        self._lock = threading.RLock()
        self._index = VectorIndex(embedder.dim)
        self._codes: dict[str, int] = {}
        self._version: str | None = None
        db.migrate("memory", MIGRATIONS)
        self._check_key()

    @classmethod
    def open(cls, db: Database, home: Path, embedder: Embedder | None = None) -> MemoryStore:
        """A store with the key from ``SOVEREIGN_MEMORY_KEY`` or ``home/memory.key``."""
        return cls(db, load_key(home), embedder or Embedder())

    # --- keys, codes, versions ------------------------------------------------------------

    def _check_key(self) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT value FROM memory_state WHERE key = 'key_check'").fetchone()
            if row is None:
                conn.execute("INSERT INTO memory_state VALUES ('key_check', ?)", (self.cipher.check_value,))
                conn.execute("INSERT OR IGNORE INTO memory_state VALUES ('version', '0')")
            elif row[0] != self.cipher.check_value:
                raise UserError("the memory key does not match this database's memory "
                                "(check SOVEREIGN_MEMORY_KEY or HOME/memory.key)", code="memory_key_mismatch")

    def _code(self, name: str) -> int:
        return self._codes.setdefault(name, len(self._codes) + 1)

    def _scope_terms(self, owner: str, agent: str | None) -> list[str]:
        scoped = [self.cipher.term("\x00owner:" + owner)]
        if agent is not None:
            scoped.append(self.cipher.term(f"\x00agent:{owner}\x00{agent}"))
        return scoped

    def _document(self, owner: str, agent: str, content: str) -> str:
        hashed = [self.cipher.term(t) for t in textmod.terms(content)]
        return " ".join(self._scope_terms(owner, agent) + hashed)

    @staticmethod
    def _bump(conn) -> str:
        conn.execute("UPDATE memory_state SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
        return conn.execute("SELECT value FROM memory_state WHERE key = 'version'").fetchone()[0]

    def _sync_index(self) -> None:
        """(Re)build the vector index if the database changed behind this process's back."""
        row = self.db.query_one("SELECT value FROM memory_state WHERE key = 'version'")
        version = row[0] if row else "0"
        if version == self._version:
            return
        index = VectorIndex(self.embedder.dim, capacity=1024)
        rows = self.db.query("SELECT n, id, owner, agent, vector FROM memory_items WHERE status = 'active'")
        if rows:
            ids = np.fromiter((r["n"] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.stack([np.frombuffer(self.cipher.decrypt(r["vector"], r["id"]), dtype=np.float32)
                                for r in rows])
            scopes = np.fromiter((self._code(r["owner"]) for r in rows), dtype=np.int64, count=len(rows))
            subs = np.fromiter((self._code(r["owner"] + "\x00" + r["agent"]) for r in rows),
                               dtype=np.int64, count=len(rows))
            index.add_many(ids, vectors, scopes, subs)
        self._index, self._version = index, version

    def _row_item(self, row) -> MemoryItem:
        return MemoryItem(
            id=row["id"], owner=row["owner"], agent=row["agent"], kind=row["kind"],
            content=self.cipher.decrypt_text(row["content"], row["id"]), source=row["source"],
            confidence=row["confidence"], created_at=row["created_at"], updated_at=row["updated_at"],
            status=row["status"], superseded_by=row["superseded_by"], session=row["session"],
        )

    # --- writing ---------------------------------------------------------------------------

    def add(self, owner: str, content: str, *, agent: str = "default", kind: str = "fact",
            source: str = "user", confidence: float = 1.0, session: str | None = None) -> WriteResult:
        """Store one memory; facts are deduplicated and contradictions superseded (see module doc)."""
        owner, agent, source = _check_name(owner, "owner"), _check_name(agent, "agent"), _check_name(source, "source")
        if kind not in KINDS:
            raise InvalidRequestError(f"kind must be one of {', '.join(KINDS)}, not '{kind}'", param="kind")
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequestError("memory content must be non-empty text", param="content")
        if len(content) > MAX_CONTENT:
            raise InvalidRequestError(f"memory content is over {MAX_CONTENT} characters", param="content")
        if not 0.0 <= float(confidence) <= 1.0:
            raise InvalidRequestError("confidence must be between 0 and 1", param="confidence")
        if kind == "summary" and not session:
            raise InvalidRequestError("a session summary needs a session id", param="session")
        content = content.strip()
        vector = self.embedder.encode_one(content)
        with self._lock:
            self._sync_index()
            if kind == "fact":
                merged = self._merge_duplicate(owner, agent, content, vector, confidence)
                if merged is not None:
                    return merged
            return self._insert(owner, agent, kind, content, vector, source, float(confidence), session)

    def _active(self, owner: str, agent: str, kind: str, session: str | None = None) -> list:
        sql = f"SELECT {_COLUMNS} FROM memory_items WHERE owner = ? AND agent = ? AND kind = ? AND status = 'active'"
        params: list = [owner, agent, kind]
        if session is not None:
            sql += " AND session = ?"
            params.append(session)
        return self.db.query(sql, params)

    def _merge_duplicate(self, owner: str, agent: str, content: str, vector: np.ndarray,
                         confidence: float) -> WriteResult | None:
        hits = self._index.search(vector, 5, sub=self._code(owner + "\x00" + agent))
        for n, similarity in hits:
            row = self.db.query_one(f"SELECT {_COLUMNS} FROM memory_items WHERE n = ? AND kind = 'fact'", (n,))
            if row is None:
                continue
            old = self._row_item(row)
            same_terms = sorted(textmod.terms(old.content)) == sorted(textmod.terms(content))
            # Same subject with a different ending ("... staging-1" / "... staging-2") is a contradiction.
            if same_terms or (similarity >= MERGE_SIMILARITY and not _same_subject(old.content, content)):
                now = _now()
                with self.db.transaction() as conn:
                    conn.execute("UPDATE memory_items SET updated_at = ?, confidence = MAX(confidence, ?) "
                                 "WHERE n = ?", (now, confidence, n))
                    self._version = self._bump(conn)
                old.updated_at, old.confidence = now, max(old.confidence, confidence)
                return WriteResult(item=old, action="merged")
        return None

    def _contradicted(self, owner: str, agent: str, kind: str, content: str, vector: np.ndarray,
                      session: str | None) -> list[MemoryItem]:
        if kind == "summary":
            return [self._row_item(r) for r in self._active(owner, agent, "summary", session)]
        if kind != "fact":
            return []
        found = []
        for n, similarity in self._index.search(vector, 5, sub=self._code(owner + "\x00" + agent)):
            if similarity < CONTRADICT_SIMILARITY:
                break
            row = self.db.query_one(f"SELECT {_COLUMNS} FROM memory_items WHERE n = ? AND kind = 'fact'", (n,))
            if row is not None and _same_subject(self.cipher.decrypt_text(row["content"], row["id"]), content):
                found.append(self._row_item(row))
        return found

    def _insert(self, owner: str, agent: str, kind: str, content: str, vector: np.ndarray, source: str,
                confidence: float, session: str | None) -> WriteResult:
        older = self._contradicted(owner, agent, kind, content, vector, session)
        item_id, now = "mem_" + secrets.token_hex(8), _now()
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO memory_items (id, owner, agent, kind, session, source, confidence, created_at,"
                " updated_at, content, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, owner, agent, kind, session, source, confidence, now, now,
                 self.cipher.encrypt_text(content, item_id), self.cipher.encrypt(vector.tobytes(), item_id)),
            )
            n = cursor.lastrowid
            conn.execute("INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)",
                         (n, self._document(owner, agent, content)))
            for old in older:
                conn.execute("UPDATE memory_items SET status = 'superseded', superseded_by = ?, updated_at = ?"
                             " WHERE id = ?", (item_id, now, old.id))
                conn.execute("DELETE FROM memory_terms WHERE rowid = (SELECT n FROM memory_items WHERE id = ?)",
                             (old.id,))
            version = self._bump(conn)
        for old in older:
            row = self.db.query_one("SELECT n FROM memory_items WHERE id = ?", (old.id,))
            self._index.remove(row["n"])
            old.status, old.superseded_by = "superseded", item_id
        self._index.add(n, vector, self._code(owner), self._code(owner + "\x00" + agent))
        self._version = version
        item = MemoryItem(id=item_id, owner=owner, agent=agent, kind=kind, content=content, source=source,
                          confidence=confidence, created_at=now, updated_at=now, session=session)
        return WriteResult(item=item, action="superseded" if older else "added",
                           replaced=older[0] if older else None)

    def import_items(self, owner: str, contents: Sequence[str], *, agent: str = "default", kind: str = "fact",
                     source: str = "import", vectors: np.ndarray | None = None, batch: int = 5000) -> int:
        """Bulk-load items without deduplication (imports, benchmarks); returns how many were stored."""
        owner, agent = _check_name(owner, "owner"), _check_name(agent, "agent")
        if kind not in KINDS or kind == "summary":
            raise InvalidRequestError("bulk import takes facts or episodes", param="kind")
        if any(not c or not c.strip() for c in contents):
            raise InvalidRequestError("every imported memory needs non-empty content", param="content")
        if vectors is None:
            vectors = self.embedder.encode(list(contents))
        with self._lock:
            for start in range(0, len(contents), batch):
                with self.db.transaction() as conn:
                    for offset, content in enumerate(contents[start:start + batch]):
                        vector = vectors[start + offset]
                        item_id, now = "mem_" + secrets.token_hex(8), _now()
                        n = conn.execute(
                            "INSERT INTO memory_items (id, owner, agent, kind, source, confidence, created_at,"
                            " updated_at, content, vector) VALUES (?, ?, ?, ?, ?, 1.0, ?, ?, ?, ?)",
                            (item_id, owner, agent, kind, source, now, now, self.cipher.encrypt_text(content, item_id),
                             self.cipher.encrypt(np.asarray(vector, np.float32).tobytes(), item_id)),
                        ).lastrowid
                        conn.execute("INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)",
                                     (n, self._document(owner, agent, content)))
                    self._bump(conn)
            self._version = None  # rebuild the index on next use
        return len(contents)

    # --- reading ---------------------------------------------------------------------------

    def search(self, owner: str, query: str, *, agent: str | None = None, k: int = 5,
               kinds: Sequence[str] | None = None) -> list[MemoryHit]:
        """The ``k`` best active memories of ``owner`` (and ``agent`` if given) for ``query``."""
        owner = _check_name(owner, "owner")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("the search query must be non-empty", param="q")
        if not 1 <= k <= 100:
            raise InvalidRequestError("k must be between 1 and 100", param="k")
        vector = self.embedder.encode_one(query)
        with self._lock:
            self._sync_index()
            sub = self._code(owner + "\x00" + agent) if agent is not None else None
            dense = self._index.search(vector, CANDIDATES, scope=self._code(owner), sub=sub)
            keyword = self._keyword(owner, agent, query)
        fused: dict[int, float] = {}
        for ranking in (dense, [(n, 0.0) for n in keyword]):
            for rank, (n, _) in enumerate(ranking):
                fused[n] = fused.get(n, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused, key=fused.get, reverse=True)
        similarity = dict(dense)
        hits: list[MemoryHit] = []
        keyword_set = set(keyword)
        for n in best:
            row = self.db.query_one(f"SELECT {_COLUMNS} FROM memory_items WHERE n = ? AND status = 'active'", (n,))
            if row is None or (kinds and row["kind"] not in kinds):
                continue
            vec = self._index.vector(n)
            sim = similarity.get(n, float(vec @ vector) if vec is not None else 0.0)
            hits.append(MemoryHit(item=self._row_item(row), score=fused[n], similarity=sim,
                                  keyword=n in keyword_set))
            if len(hits) >= k:
                break
        return hits

    def _keyword(self, owner: str, agent: str | None, query: str) -> list[int]:
        hashed = [self.cipher.term(t) for t in textmod.terms(query)]
        if not hashed:
            return []
        scope = " AND ".join(f'"{t}"' for t in self._scope_terms(owner, agent))
        match = f"{scope} AND ({textmod.fts_or_query(hashed)})"
        rows = self.db.query("SELECT rowid FROM memory_terms WHERE memory_terms MATCH ? ORDER BY rank LIMIT ?",
                             (match, CANDIDATES))
        return [r[0] for r in rows]

    def get(self, owner: str, item_id: str) -> MemoryItem:
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM memory_items WHERE id = ? AND owner = ?", (item_id, owner))
        if row is None:
            raise NotFoundError(f"no memory item '{item_id}'", param="id")
        return self._row_item(row)

    def list(self, owner: str, *, agent: str | None = None, kind: str | None = None,
             include_history: bool = False, limit: int = 100, offset: int = 0) -> list[MemoryItem]:
        """Memories of ``owner``, newest first; superseded ones only with ``include_history``."""
        if kind is not None and kind not in KINDS:
            raise InvalidRequestError(f"kind must be one of {', '.join(KINDS)}", param="kind")
        if not 1 <= limit <= 10_000 or offset < 0:
            raise InvalidRequestError("limit must be 1..10000 and offset non-negative", param="limit")
        sql, params = f"SELECT {_COLUMNS} FROM memory_items WHERE owner = ?", [owner]
        for column, value in (("agent", agent), ("kind", kind)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if not include_history:
            sql += " AND status = 'active'"
        sql += " ORDER BY n DESC LIMIT ? OFFSET ?"
        return [self._row_item(r) for r in self.db.query(sql, [*params, limit, offset])]

    def history(self, owner: str, item_id: str) -> list[MemoryItem]:
        """The item and the older versions it superseded, newest first."""
        chain, current = [self.get(owner, item_id)], item_id
        while True:
            row = self.db.query_one(f"SELECT {_COLUMNS} FROM memory_items WHERE superseded_by = ? AND owner = ?",
                                    (current, owner))
            if row is None:
                return chain
            chain.append(self._row_item(row))
            current = row["id"]

    def export(self, owner: str) -> list[dict]:
        """Every memory of ``owner``, history included, as plain dictionaries (decrypted)."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM memory_items WHERE owner = ? ORDER BY n", (owner,))
        return [self._row_item(r).to_dict() for r in rows]

    def count(self, owner: str | None = None) -> int:
        if owner is None:
            return self.db.query_one("SELECT COUNT(*) FROM memory_items")[0]
        return self.db.query_one("SELECT COUNT(*) FROM memory_items WHERE owner = ?", (owner,))[0]

    # --- forgetting ------------------------------------------------------------------------

    def forget(self, owner: str, item_id: str) -> int:
        """Delete an item of ``owner`` and the history it superseded; returns how many rows went."""
        with self._lock:
            chain = self.history(owner, item_id)
            ns = [self.db.query_one("SELECT n FROM memory_items WHERE id = ?", (i.id,))["n"] for i in chain]
            with self.db.transaction() as conn:
                for n in ns:
                    conn.execute("DELETE FROM memory_terms WHERE rowid = ?", (n,))
                    conn.execute("DELETE FROM memory_items WHERE n = ?", (n,))
                version = self._bump(conn)
            for n in ns:
                self._index.remove(n)
            if self._version is not None:
                self._version = version
        return len(ns)
