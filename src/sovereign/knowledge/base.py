"""The knowledge base: ingest files into cited chunks, hybrid retrieval, and knowledge units.

Ingest: each file is hashed; an unchanged file (same SHA-256) is skipped, a changed one has all
its chunks replaced in one transaction (readers see the old chunks or the new, never a mix), and
a file that fails to parse is reported by name while the rest still ingest. Retrieval fuses
FTS5 (BM25, Porter stemming) and exact vector search (all-MiniLM-L6-v2) by reciprocal rank;
every hit carries its citation (file, section, chunk). Knowledge units — distilled by
``writeback.py`` from passages that supported a verified answer — are indexed beside the corpus
(their question and text), link to their source chunks, and come back from the same search.

A unit is embedded by its question. Results are ranked by *evidence* (source passage), so units
never crowd out passages: a unit whose question is at least ``UNIT_MATCH`` similar to the query —
the same question asked again, possibly in other words — comes first (most similar first) and
brings its source passages along (``KbHit.passages``); everything else follows in fused rank; and
a passage already brought by a returned unit — or a unit whose sources were all returned already
— does not take another of the ``k`` places.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sovereign.errors import InvalidRequestError, NotFoundError
from sovereign.knowledge.chunking import chunk_sections
from sovereign.knowledge.parsers import SUFFIXES, IngestError, Ocr, parse_file
from sovereign.knowledge.schema import MIGRATIONS
from sovereign.memory.embeddings import Embedder
from sovereign.memory.text import STOP_WORDS, fts_or_query, words
from sovereign.memory.vectors import VectorIndex
from sovereign.store import Database

__all__ = ["KnowledgeBase", "Citation", "KbHit", "IngestReport", "expand_paths"]

RRF_K = 60
CANDIDATES = 50
UNIT_SECTION = "knowledge unit"
UNIT_MATCH = 0.5  # cosine between the query and a unit's question that counts as "asked before"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True, frozen=True)
class Citation:
    path: str
    section: str
    chunk: int
    page: int | None = None

    def __str__(self) -> str:
        where = f", p. {self.page}" if self.page else ""
        return f"{Path(self.path).name} § {self.section or '(top)'} #{self.chunk}{where}"


@dataclass(slots=True)
class KbHit:
    n: int
    kind: str  # "chunk" or "unit"
    text: str
    citation: Citation
    score: float
    similarity: float
    sources: list[Citation] = field(default_factory=list)  # for units: the supporting chunks
    passages: list[KbHit] = field(default_factory=list)  # for units: those chunks, as hits


@dataclass(slots=True)
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    pages: int = 0
    seconds: float = 0.0


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files named, plus supported files under named folders (sorted); missing paths kept to fail."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        else:
            out.append(path)
    return out


class KnowledgeBase:
    """Documents and knowledge units in the shared ``Database``, searchable with citations."""

    def __init__(self, db: Database, embedder: Embedder | None = None, *, ocr: Ocr | None = None) -> None:
        self.db = db
        self.embedder = embedder or Embedder()
        self.ocr = ocr  # reads images and scanned PDF pages (``perception.ingest.ocr_function``)
        self._lock = threading.RLock()
        self._index = VectorIndex(self.embedder.dim)
        self._version: str | None = None
        db.migrate("knowledge", MIGRATIONS)

    # --- index upkeep ----------------------------------------------------------------------

    @staticmethod
    def _bump(conn) -> None:
        conn.execute("UPDATE kb_state SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")

    def _sync_index(self) -> None:
        version = self.db.query_one("SELECT value FROM kb_state WHERE key = 'version'")[0]
        if version == self._version:
            return
        index = VectorIndex(self.embedder.dim)
        for kind in ("chunk", "unit"):
            rows = self.db.query("SELECT n, vector FROM kb_chunks WHERE kind = ?", (kind,))
            if rows:
                index.add_many(kind, np.array([r["n"] for r in rows], dtype=np.int64),
                               np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows]))
        self._index, self._version = index, version

    # --- ingest ------------------------------------------------------------------------------

    def ingest(self, paths: Sequence[Path | str],
               progress: Callable[[Path, str], None] | None = None) -> IngestReport:
        """Ingest files and folders; ``progress(path, outcome)`` is called after each file."""
        report, started = IngestReport(), time.perf_counter()
        for path in expand_paths(paths):
            try:
                outcome, chunks, pages = self.ingest_file(path)
            except IngestError as exc:
                outcome, chunks, pages = "failed", 0, 0
                report.failed.append((str(path), exc.message))
            else:
                getattr(report, outcome).append(str(path))
                report.chunks += chunks
                report.pages += pages
            if progress is not None:
                progress(path, outcome)
        report.seconds = time.perf_counter() - started
        return report

    def ingest_file(self, path: Path) -> tuple[str, int, int]:
        """``(outcome, chunks, pages)`` where outcome is ``added``, ``updated`` or ``unchanged``."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise IngestError(f"{path}: no such file")
        key = str(path.resolve())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        existing = self.db.query_one("SELECT id, sha256 FROM kb_documents WHERE path = ?", (key,))
        if existing is not None and existing["sha256"] == digest:
            return "unchanged", 0, 0
        kind, sections, pages = parse_file(path, self.ocr)
        chunks = chunk_sections(sections)
        if not chunks:
            raise IngestError(f"{path}: no text to index")
        vectors = self.embedder.encode([f"{c.section}\n{c.text}" if c.section else c.text for c in chunks])
        now = _now()
        with self._lock, self.db.transaction() as conn:
            if existing is not None:
                conn.execute("DELETE FROM kb_fts WHERE rowid IN (SELECT n FROM kb_chunks WHERE doc_id = ?)",
                             (existing["id"],))
                conn.execute("DELETE FROM kb_chunks WHERE doc_id = ?", (existing["id"],))
                conn.execute("UPDATE kb_documents SET format = ?, sha256 = ?, pages = ?, ingested_at = ? WHERE id = ?",
                             (kind, digest, pages, now, existing["id"]))
                doc_id = existing["id"]
            else:
                doc_id = conn.execute("INSERT INTO kb_documents (path, format, sha256, pages, ingested_at)"
                                      " VALUES (?, ?, ?, ?, ?)", (key, kind, digest, pages, now)).lastrowid
            for chunk, vector in zip(chunks, vectors, strict=True):
                n = conn.execute("INSERT INTO kb_chunks (doc_id, kind, ordinal, section, page, text, vector,"
                                 " created_at) VALUES (?, 'chunk', ?, ?, ?, ?, ?, ?)",
                                 (doc_id, chunk.ordinal, chunk.section, chunk.page, chunk.text,
                                  vector.tobytes(), now)).lastrowid
                conn.execute("INSERT INTO kb_fts (rowid, text, section) VALUES (?, ?, ?)",
                             (n, chunk.text, chunk.section))
            self._bump(conn)
        return ("updated" if existing is not None else "added"), len(chunks), pages

    def documents(self) -> list[dict]:
        rows = self.db.query("SELECT d.path, d.format, d.pages, d.ingested_at, COUNT(c.n) AS chunks FROM kb_documents d"
                             " LEFT JOIN kb_chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.path")
        return [dict(r) for r in rows]

    # --- knowledge units ---------------------------------------------------------------------

    def add_unit(self, question: str, text: str, sources: Sequence[Citation]) -> int:
        """Store a knowledge unit answering ``question`` with links to ``sources``; returns its id."""
        if not text.strip() or not question.strip():
            raise InvalidRequestError("a knowledge unit needs a question and text")
        if not sources:
            raise InvalidRequestError("a knowledge unit needs at least one source passage")
        vector = self.embedder.encode_one(question.strip())  # its text is found through its sources
        with self._lock, self.db.transaction() as conn:
            n = conn.execute("INSERT INTO kb_chunks (doc_id, kind, ordinal, section, text, question, vector, created_at)"
                             " VALUES (NULL, 'unit', 0, ?, ?, ?, ?, ?)",
                             (UNIT_SECTION, text.strip(), question.strip(), vector.tobytes(), _now())).lastrowid
            conn.execute("UPDATE kb_chunks SET ordinal = n WHERE n = ?", (n,))
            conn.execute("INSERT INTO kb_fts (rowid, text, section) VALUES (?, ?, ?)",
                         (n, f"{question}\n{text}", UNIT_SECTION))
            conn.executemany("INSERT INTO kb_unit_sources (unit_n, path, section, ordinal) VALUES (?, ?, ?, ?)",
                             [(n, s.path, s.section, s.chunk) for s in sources])
            self._bump(conn)
        return n

    def units(self) -> list[KbHit]:
        ns = [r["n"] for r in self.db.query("SELECT n FROM kb_chunks WHERE kind = 'unit' ORDER BY n")]
        return self._hits(ns, dict.fromkeys(ns, 0.0), {})

    def remove_unit(self, n: int) -> None:
        with self._lock, self.db.transaction() as conn:
            if conn.execute("DELETE FROM kb_chunks WHERE n = ? AND kind = 'unit'", (n,)).rowcount == 0:
                raise NotFoundError(f"no knowledge unit {n}")
            conn.execute("DELETE FROM kb_fts WHERE rowid = ?", (n,))
            self._bump(conn)

    # --- retrieval ---------------------------------------------------------------------------

    def search(self, query: str, k: int = 5, *, include_units: bool = True) -> list[KbHit]:
        """The ``k`` best passages and knowledge units for ``query``, each with its citation."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("the search query must be non-empty", param="q")
        if not 1 <= k <= 100:
            raise InvalidRequestError("k must be between 1 and 100", param="k")
        vector = self.embedder.encode_one(query)
        with self._lock:
            self._sync_index()
            dense = self._index.search(vector, CANDIDATES, ("chunk", "unit") if include_units else ("chunk",))
        keyword = self._keyword(query, include_units)
        fused: dict[int, float] = {}
        for ranking in ([n for n, _ in dense], keyword):
            for rank, n in enumerate(ranking):
                fused[n] = fused.get(n, 0.0) + 1.0 / (RRF_K + rank + 1)
        rows = self._rows(list(fused))
        sources = self._sources([n for n, row in rows.items() if row["kind"] == "unit"])
        answered = [n for n, sim in dense if sim >= UNIT_MATCH and n in sources]
        best = _by_evidence(answered + sorted(fused, key=fused.get, reverse=True), rows, sources, k)
        return self._hits(best, {n: fused[n] for n in best}, dict(dense), rows, sources)

    def _keyword(self, query: str, include_units: bool) -> list[int]:
        tokens = [w for w in words(query) if w not in STOP_WORDS]
        if not tokens:
            return []
        sql = "SELECT kb_fts.rowid FROM kb_fts WHERE kb_fts MATCH ?"
        if not include_units:
            sql += f" AND section != '{UNIT_SECTION}'"
        rows = self.db.query(sql + " ORDER BY rank LIMIT ?", (fts_or_query(tokens), CANDIDATES))
        return [r[0] for r in rows]

    def _rows(self, ns: Sequence[int]) -> dict[int, object]:
        """Chunk and unit rows by ``n``, with their document path, in one query."""
        if not ns:
            return {}
        rows = self.db.query("SELECT c.n, c.kind, c.ordinal, c.section, c.page, c.text, d.path FROM kb_chunks c"
                             f" LEFT JOIN kb_documents d ON d.id = c.doc_id WHERE c.n IN ({','.join('?' * len(ns))})",
                             list(ns))
        return {row["n"]: row for row in rows}

    def _sources(self, units: Sequence[int]) -> dict[int, list[Citation]]:
        """Each unit's source citations, in one query."""
        out: dict[int, list[Citation]] = {n: [] for n in units}
        if units:
            for s in self.db.query("SELECT unit_n, path, section, ordinal FROM kb_unit_sources"
                                   f" WHERE unit_n IN ({','.join('?' * len(units))}) ORDER BY rowid", list(units)):
                out[s["unit_n"]].append(Citation(s["path"], s["section"], s["ordinal"]))
        return out

    def _passages(self, units: Sequence[int]) -> dict[int, list[KbHit]]:
        """The chunks that units cite (those still in the corpus), as hits."""
        out: dict[int, list[KbHit]] = {n: [] for n in units}
        if units:
            for r in self.db.query("SELECT s.unit_n, c.n, c.ordinal, c.section, c.page, c.text, d.path"
                                   " FROM kb_unit_sources s JOIN kb_documents d ON d.path = s.path"
                                   " JOIN kb_chunks c ON c.doc_id = d.id AND c.ordinal = s.ordinal"
                                   f" AND c.section = s.section WHERE s.unit_n IN ({','.join('?' * len(units))})"
                                   " ORDER BY s.rowid", list(units)):
                out[r["unit_n"]].append(KbHit(r["n"], "chunk", r["text"], _citation(r), 0.0, 0.0))
        return out

    def _hits(self, ns: Sequence[int], scores: dict[int, float], similarity: dict[int, float],
              rows: dict | None = None, sources: dict | None = None) -> list[KbHit]:
        rows = rows if rows is not None else self._rows(ns)
        units = [n for n in ns if rows[n]["kind"] == "unit"]
        sources = sources if sources is not None else self._sources(units)
        passages = self._passages(units)
        hits = []
        for n in ns:
            row, score, sim = rows[n], scores[n], similarity.get(n, 0.0)
            if row["kind"] == "unit":
                hits.append(KbHit(n, "unit", row["text"], Citation(f"knowledge-unit:{n}", UNIT_SECTION, n),
                                  score, sim, sources[n], passages[n]))
            else:
                hits.append(KbHit(n, "chunk", row["text"], _citation(row), score, sim))
        return hits


def _citation(row) -> Citation:
    return Citation(row["path"], row["section"], row["ordinal"], row["page"])


def _by_evidence(ranked: list[int], rows: dict, sources: dict[int, list[Citation]], k: int) -> list[int]:
    """The first ``k`` of ``ranked`` that each add a source passage not yet covered (module doc)."""
    best, covered = [], set()
    for n in dict.fromkeys(ranked):
        if n not in rows:
            continue
        cited = sources[n] if rows[n]["kind"] == "unit" else [_citation(rows[n])]
        evidence = {(c.path, c.section, c.chunk) for c in cited}
        if evidence and covered.issuperset(evidence):
            continue
        covered.update(evidence)
        best.append(n)
        if len(best) == k:
            break
    return best
