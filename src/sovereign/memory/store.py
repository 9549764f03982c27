"""The memory store: encrypted facts, episodes and session summaries with hybrid search.

Layout on disk (see ``schema.py``): each item's text and embedding vector are AES-GCM
ciphertext; owner, agent, kind, source, session id, confidence and times are plain metadata.
Full-text search runs on FTS5 (BM25) over term hashes keyed per owner and agent (``crypto.py``),
so a query's terms only match its own scope's rows and no scope term has to be ANDed in; vector
search runs on an exact in-memory index with one float32 matrix per owner and agent
(``vectors.py``), decrypted from the database at first use, updated on each write of this
process and rebuilt when another process writes (a version counter in ``memory_state``). The two
rankings (50 candidates each) are fused by reciprocal rank (k = 60); the candidates' rows are
read in one query and only the returned ``k`` are decrypted.

Write path for facts: a new fact with the same terms as an active fact of the same owner and
agent, or whose cosine with it is at least ``MERGE_SIMILARITY`` without sharing its subject, is
merged into it; one that shares its subject (a common word prefix covering half the shorter
fact) but ends differently and is at least ``CONTRADICT_SIMILARITY`` similar supersedes it — the older stays as history, out of search.
A session summary supersedes the previous summary of the same session. Episodes are appended.
"""

from __future__ import annotations

import json
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


def _check_content(content: str) -> None:
    if not isinstance(content, str) or not content.strip():
        raise InvalidRequestError("memory content must be non-empty text", param="content")
    if len(content) > MAX_CONTENT:
        raise InvalidRequestError(f"memory content is over {MAX_CONTENT} characters", param="content")


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


def _scope_name(scope: tuple[str, str]) -> str:
    """The unambiguous name of an (owner, agent) scope that keys its search terms."""
    return json.dumps(list(scope))


class MemoryStore:
    """Persistent, encrypted, owner-scoped agent memory over the shared ``Database``."""

    def __init__(self, db: Database, key: bytes, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder
        self.cipher = MemoryCipher(key)
        self._lock = threading.RLock()
        self._index = VectorIndex(embedder.dim)
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
            if conn.execute("SELECT 1 FROM memory_state WHERE key = 'terms'").fetchone() is None:
                self._reindex_terms(conn)

    def _reindex_terms(self, conn) -> None:
        """Re-hash every active item's terms under its scope key (databases from before scoped terms)."""
        conn.execute("DELETE FROM memory_terms")
        for row in conn.execute("SELECT n, id, owner, agent, content FROM memory_items WHERE status = 'active'"):
            conn.execute("INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)", (row[0], self._document(
                row[2], row[3], self.cipher.decrypt_text(row[4], row[1]))))
        conn.execute("INSERT INTO memory_state VALUES ('terms', 'scoped')")

    def _document(self, owner: str, agent: str, content: str) -> str:
        scope = _scope_name((owner, agent))
        return " ".join(self.cipher.term(t, scope) for t in textmod.terms(content))

    def _bump(self, conn) -> str | None:
        """Advance the version; this process's index stays current only if no one else wrote since."""
        before = conn.execute("SELECT value FROM memory_state WHERE key = 'version'").fetchone()[0]
        conn.execute("UPDATE memory_state SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
        after = conn.execute("SELECT value FROM memory_state WHERE key = 'version'").fetchone()[0]
        return after if before == self._version else None

    def _sync_index(self) -> None:
        """(Re)build the vector index if the database changed behind this process's back."""
        row = self.db.query_one("SELECT value FROM memory_state WHERE key = 'version'")
        version = row[0] if row else "0"
        if version == self._version:
            return
        groups: dict[tuple[str, str], list] = {}
        for row in self.db.query("SELECT n, id, owner, agent, vector FROM memory_items WHERE status = 'active'"):
            groups.setdefault((row["owner"], row["agent"]), []).append(row)
        index = VectorIndex(self.embedder.dim)
        for scope, rows in groups.items():
            plain = b"".join(self.cipher.decrypt(r["vector"], r["id"]) for r in rows)
            index.add_many(scope, np.fromiter((r["n"] for r in rows), dtype=np.int64, count=len(rows)),
                           np.frombuffer(plain, dtype=np.float32).reshape(len(rows), self.embedder.dim))
        self._index, self._version = index, version

    def _scopes(self, owner: str, agent: str | None) -> list[tuple[str, str]]:
        """The (owner, agent) scopes a search covers: one, or every agent of ``owner``."""
        if agent is not None:
            return [(owner, agent)]
        return [scope for scope in self._index.scopes() if scope[0] == owner]

    def _rows(self, ns: Sequence[int], where: str = "", params: Sequence = ()) -> dict[int, object]:
        """Rows by ``n`` for ``ns`` (one query), optionally narrowed by an extra ``where`` clause."""
        if not ns:
            return {}
        marks = ",".join("?" * len(ns))
        rows = self.db.query(f"SELECT {_COLUMNS} FROM memory_items WHERE n IN ({marks}){where}", [*ns, *params])
        return {row["n"]: row for row in rows}

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
        _check_content(content)
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

    def edit(self, owner: str, item_id: str, content: str) -> WriteResult:
        """Replace the text of an active item of ``owner``: a new version supersedes it (the old
        one stays as its history, see ``history``)."""
        _check_content(content)
        old = self.get(owner, item_id)
        if old.status != "active":
            raise InvalidRequestError(f"memory item '{item_id}' is {old.status}; edit its current version",
                                      param="id")
        content = content.strip()
        vector = self.embedder.encode_one(content)
        with self._lock:
            self._sync_index()
            return self._insert(owner, old.agent, old.kind, content, vector, "edit", old.confidence, old.session,
                                replaces=old)

    def _active(self, owner: str, agent: str, kind: str, session: str | None = None) -> list:
        sql = f"SELECT {_COLUMNS} FROM memory_items WHERE owner = ? AND agent = ? AND kind = ? AND status = 'active'"
        params: list = [owner, agent, kind]
        if session is not None:
            sql += " AND session = ?"
            params.append(session)
        return self.db.query(sql, params)

    def _merge_duplicate(self, owner: str, agent: str, content: str, vector: np.ndarray,
                         confidence: float) -> WriteResult | None:
        hits = self._index.search(vector, 5, [(owner, agent)])
        rows = self._rows([n for n, _ in hits], " AND +kind = 'fact'")
        for n, similarity in hits:
            row = rows.get(n)
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
        hits = [(n, s) for n, s in self._index.search(vector, 5, [(owner, agent)]) if s >= CONTRADICT_SIMILARITY]
        rows, found = self._rows([n for n, _ in hits], " AND +kind = 'fact'"), []
        for n, _ in hits:
            row = rows.get(n)
            if row is not None and _same_subject(self.cipher.decrypt_text(row["content"], row["id"]), content):
                found.append(self._row_item(row))
        return found

    def _insert(self, owner: str, agent: str, kind: str, content: str, vector: np.ndarray, source: str,
                confidence: float, session: str | None, replaces: MemoryItem | None = None) -> WriteResult:
        older = self._contradicted(owner, agent, kind, content, vector, session)
        if replaces is not None:
            older = [replaces, *(o for o in older if o.id != replaces.id)]
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
        self._index.add((owner, agent), n, vector)
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
        vectors = np.asarray(self.embedder.encode(list(contents)) if vectors is None else vectors, np.float32)
        with self._lock:
            self._sync_index()
            for start in range(0, len(contents), batch):
                ns = []
                with self.db.transaction() as conn:
                    for offset, content in enumerate(contents[start:start + batch]):
                        item_id, now = "mem_" + secrets.token_hex(8), _now()
                        ns.append(conn.execute(
                            "INSERT INTO memory_items (id, owner, agent, kind, source, confidence, created_at,"
                            " updated_at, content, vector) VALUES (?, ?, ?, ?, ?, 1.0, ?, ?, ?, ?)",
                            (item_id, owner, agent, kind, source, now, now, self.cipher.encrypt_text(content, item_id),
                             self.cipher.encrypt(vectors[start + offset].tobytes(), item_id)),
                        ).lastrowid)
                        conn.execute("INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)",
                                     (ns[-1], self._document(owner, agent, content)))
                    self._version = self._bump(conn)
                self._index.add_many((owner, agent), np.array(ns, dtype=np.int64), vectors[start:start + len(ns)])
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
        # Unary "+" keeps SQLite on the rowid lookup instead of scanning the owner's index range.
        where, params = " AND +status = 'active' AND +owner = ?", [owner]
        if agent is not None:
            where, params = where + " AND +agent = ?", [*params, agent]
        if kinds:
            where, params = where + f" AND +kind IN ({','.join('?' * len(kinds))})", [*params, *kinds]
        with self._lock:
            self._sync_index()
            scopes = self._scopes(owner, agent)
            dense = self._index.search(vector, CANDIDATES, scopes)
            keyword = self._keyword(query, scopes)
            fused: dict[int, float] = {}
            for ranking in ([n for n, _ in dense], keyword):
                for rank, n in enumerate(ranking):
                    fused[n] = fused.get(n, 0.0) + 1.0 / (RRF_K + rank + 1)
            best = sorted(fused, key=fused.get, reverse=True)
            rows = self._rows(best, where, params)
            best = [n for n in best if n in rows][:k]
            similarity = dict(dense)
            for n in best:
                if n not in similarity:  # a keyword-only hit: its cosine from the index
                    stored = self._index.vector(n)
                    similarity[n] = float(stored @ vector) if stored is not None else 0.0
        keyword_set = set(keyword)
        return [MemoryHit(item=self._row_item(rows[n]), score=fused[n], similarity=similarity[n],
                          keyword=n in keyword_set) for n in best]

    def _keyword(self, query: str, scopes: Sequence[tuple[str, str]]) -> list[int]:
        """Row ids of the best BM25 matches among ``scopes`` (terms hashed per scope, so no filter)."""
        words = textmod.terms(query)
        if not words or not scopes:
            return []
        hashed = [self.cipher.term(w, _scope_name(scope)) for scope in scopes for w in words]
        rows = self.db.query("SELECT rowid FROM memory_terms WHERE memory_terms MATCH ? ORDER BY rank LIMIT ?",
                             (textmod.fts_or_query(hashed), CANDIDATES))
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
            self._version = version
        return len(ns)
