"""The audit trail: an append-only, hash-chained log of everything that matters.

Every entry stores ``seq``, ``ts``, ``kind``, ``actor``, ``data`` (JSON), ``prev_hash`` and
``hash = sha256(prev_hash + "\\n" + canonical_json({seq, ts, kind, actor, data}))``. The first
entry chains to ``GENESIS``. A one-row ``audit_head`` table records the last seq and hash, so a
truncated tail is detected too. SQLite triggers refuse UPDATE and DELETE on the log; someone
with raw access to the file can still drop them, which is what ``verify`` is for: it names the
first entry that was edited, deleted, inserted or moved. Whoever can write the file can also
recompute every hash; an ``AuditAnchor`` (``audit_anchor.py``) checkpoints the head outside the
database, signed with a key the database does not hold, and ``verify`` checks the chain against
every checkpoint.

Secrets are redacted *before* anything is written: values under secret-looking keys
(password, secret, token, api_key, authorization, ...) and secret-looking strings anywhere
(``sk-...`` keys, ``Bearer ...`` headers, GitHub/AWS/Slack tokens, JWTs, PEM private keys,
``password=...`` in URLs).

Kinds in use: ``model.call``, ``tool.call``, ``policy.decision``, ``egress``, ``approval``,
``key.created``, ``key.revoked``, ``identity.created``, ``identity.changed``, ``auth.refused``,
``spend.reserved``, ``spend.settled``, ``spend.refused``, ``cap.set``, ``injection.detected``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from sqlite3 import Connection
from typing import TYPE_CHECKING, Any

from sovereign.store import Database

if TYPE_CHECKING:
    from sovereign.governance.audit_anchor import AuditAnchor

__all__ = [
    "GENESIS", "AuditEntry", "AuditLog", "AuditVerdict", "audit_egress", "canonical_json",
    "entry_hash", "redact", "redact_text", "redacted_json", "find_secrets",
]

GENESIS = "0" * 64
REDACTED = "[REDACTED]"

MIGRATIONS = [
    """
    CREATE TABLE audit_log (
        seq       INTEGER PRIMARY KEY,
        ts        TEXT NOT NULL,
        kind      TEXT NOT NULL,
        actor     TEXT,
        data      TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_log_kind ON audit_log (kind, seq);
    CREATE TABLE audit_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # No query reads the log through (kind, seq): ``entries(kind=...)`` matches ``kind LIKE``,
    # which walks seq order anyway. The index only cost a page write per entry.
    "DROP INDEX IF EXISTS audit_log_kind;",
]

# --- redaction ---------------------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"^(?:.*[_\-])?(?:password|passwd|passphrase|secret|token|api[_\-]?key|apikey|"
    r"authorization|cookie|set[_\-]cookie|private[_\-]?key|credentials?|session[_\-]?id)$",
    re.IGNORECASE,
)
_SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("pem_private_key", re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL)),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}")),
    ("api_key", re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("slack_token", re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")),
    ("url_secret", re.compile(
        r"(?i)(?<=[?&;])(?:password|passwd|secret|token|api[_\-]?key|apikey|access_token|key)"
        r"=[^&\s#\"']+")),
]


def find_secrets(text: str) -> list[tuple[str, str]]:
    """``(kind, match)`` for every secret-looking string in ``text``."""
    found = []
    for kind, pattern in _SECRET_PATTERNS:
        found.extend((kind, m.group(0)) for m in pattern.finditer(text))
    return found


def _mask(kind: str, match: re.Match[str]) -> str:
    text = match.group(0)
    if kind == "bearer_token":
        return "Bearer " + REDACTED
    if kind == "api_key":
        return "sk-" + REDACTED
    if kind == "url_secret":
        return text.split("=", 1)[0] + "=" + REDACTED
    return REDACTED


# Every pattern above needs one of these; text without any is returned as it is (one scan).
_MAYBE_SECRET = re.compile(r"-----BEGIN|(?i:bearer)\s|sk-|gh[pousr]_|github_pat_|AKIA|ASIA|xox[abprs]-|eyJ|=")


def redact_text(text: str) -> str:
    """``text`` with every secret-looking string replaced by ``[REDACTED]``."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for kind, pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m, k=kind: _mask(k, m), text)
    return text


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Whether values under ``key`` are redacted (entries repeat the same keys: decided once)."""
    return _SECRET_KEY.match(key) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with secrets redacted, by key name and by pattern."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key = str(key)
            if item is None or isinstance(item, bool):
                out[key] = item  # never redacted, even under a secret-looking key
            elif _secret_key(key):
                out[key] = REDACTED
            elif isinstance(item, str):
                out[key] = redact_text(item)
            elif isinstance(item, (int, float)):
                out[key] = item
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


# --- hashing -----------------------------------------------------------------------------


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as it is, no NaN: the bytes every hash is taken over."""
    return _CANONICAL.encode(value)


def entry_hash(prev_hash: str, seq: int, ts: str, kind: str, actor: str | None, data: Any) -> str:
    body = canonical_json({"seq": seq, "ts": ts, "kind": kind, "actor": actor, "data": data})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _chained_hash(prev_hash: str, seq: int, ts: str, kind: str, actor: str | None, data_json: str) -> str:
    """``entry_hash`` for data already in canonical JSON (``data_json``): the same bytes, built
    around it instead of encoding the data again (keys in sorted order: actor, data, kind, seq, ts)."""
    body = (f'{{"actor":{"null" if actor is None else _string(actor)},"data":{data_json},"kind":{_string(kind)},'
            f'"seq":{seq},"ts":{_string(ts)}}}')
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


_string = json.encoder.encode_basestring  # what ``canonical_json`` writes for a str (ensure_ascii off)
_SHAPES: dict[tuple[Any, ...], list[tuple[str, str, bool]] | None] = {}
_FRAGMENTS: dict[tuple[str, str], str] = {}
_NAMES: dict[str, str] = {}
_CACHE_MAX = 4096
_FRAGMENT_TEXT_MAX = 256


def _remember(cache: dict, key: Any, value: str, text: str, clean: str) -> None:
    """Keep ``value`` under ``key`` when redaction found nothing in the short ``text`` (``clean``
    is what it left): a secret is never kept in memory. The cache is emptied when full."""
    if clean == text and len(text) <= _FRAGMENT_TEXT_MAX:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value


def _redacted_name(actor: str) -> str:
    """``redact_text`` of an entry's actor (a handful of names, repeated: each scanned once)."""
    clean = _NAMES.get(actor)
    if clean is None:
        clean = redact_text(actor)
        _remember(_NAMES, actor, clean, actor, clean)
    return clean


def _shape(keys: tuple[Any, ...]) -> list[tuple[str, str, bool]] | None:
    """The keys of a dict in canonical order, each with ``'"key":'`` and whether its values are
    redacted; ``None`` unless every key is a plain ``str``. Entries of one kind repeat the same
    keys, so each set is worked out once (a bounded cache)."""
    shape = _SHAPES.get(keys, False)
    if shape is False:
        if len(_SHAPES) >= _CACHE_MAX:
            _SHAPES.clear()
        plain = all(type(key) is str for key in keys)
        shape = _SHAPES[keys] = [(key, _string(key) + ":", _secret_key(key)) for key in sorted(keys)] if plain else None
    return shape


def redacted_json(data: dict[str, Any]) -> str:
    """``canonical_json(redact(data))``, the same text, built faster: each item is written as
    the canonical encoder writes it, and a short string under a key (entries repeat the same
    ids, names and models) is redacted and encoded once (a bounded cache that keeps only
    strings in which redaction found nothing: no secret stays in memory). Values other than
    plain ``str``, ``int``, finite ``float``, ``bool``, ``None`` and ``dict`` (and dicts with
    keys other than strings) take the general path."""
    shape = _shape(tuple(data)) if type(data) is dict else None
    if shape is None:  # not a plain dict, or keys that redact() turns into strings first
        return canonical_json(redact(data))
    parts = []
    for key, prefix, secret in shape:
        value = data[key]
        kind = type(value)
        if kind is str:
            part = _FRAGMENTS.get((key, value))
            if part is None:
                clean = REDACTED if secret else redact_text(value)
                part = prefix + _string(clean)
                _remember(_FRAGMENTS, (key, value), part, value, clean)
        elif value is None:
            part = prefix + "null"
        elif kind is bool:
            part = prefix + ("true" if value else "false")
        elif secret:
            part = prefix + '"' + REDACTED + '"'
        elif kind is int or (kind is float and math.isfinite(value)):
            part = prefix + repr(value)
        elif kind is dict:
            part = prefix + redacted_json(value)
        else:  # a list, a subclass, a non-finite float: as redact() does
            part = prefix + canonical_json(redact(value))
        parts.append(part)
    return "{" + ",".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str
    kind: str
    actor: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "kind": self.kind, "actor": self.actor,
                "data": self.data, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str = "chain intact"
    head_hash: str = GENESIS
    anchors: int | None = None
    """Anchors the chain was checked against (``None``: the log has no anchor)."""
    anchored_seq: int | None = None
    """The latest anchored entry: everything up to it is proven unchanged."""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_bad_seq": self.first_bad_seq,
                "reason": self.reason, "head_hash": self.head_hash, "anchors": self.anchors,
                "anchored_seq": self.anchored_seq}


_second: tuple[int, str] = (0, "")  # the last whole second formatted, and its text


def _now() -> str:
    """``%Y-%m-%dT%H:%M:%S.%fZ`` in UTC (each second formatted once: every entry has one)."""
    global _second
    now = time.time()
    whole = int(now)
    second = _second  # one read: another thread may replace it meanwhile
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int((now - whole) * 1_000_000):06d}Z"


class AuditLog:
    """The hash-chained audit log in the shared database; safe across threads and processes.

    With an ``anchor`` its head is checkpointed outside the database every ``anchor.every``
    entries (once they commit) and whenever ``checkpoint`` is called, and ``verify`` checks the
    chain against every checkpoint."""

    def __init__(self, db: Database, *, anchor: AuditAnchor | None = None) -> None:
        self.db = db
        self.anchor = anchor
        self._head: tuple[int, str] | None = None
        """The head (seq, hash) this log last wrote: tried first by the next append."""
        self._vouched: tuple[int, str, int, str] | None = None
        """``(anchor seq, anchor head, seq, head)``: the entries after that anchor up to ``seq``
        were all chained by this log in memory (none read back), so the anchor may sign ``head``
        without re-reading them (see ``vouches``)."""
        db.migrate("audit", MIGRATIONS)

    # --- writing -------------------------------------------------------------------------

    def append(self, kind: str, actor: str | None, data: dict[str, Any] | None = None) -> int:
        """Redact, chain and write one entry atomically; returns its ``seq``."""
        with self.db.transaction() as conn:
            return self.append_in(conn, kind, actor, data)

    def append_in(self, conn: Connection, kind: str, actor: str | None,
                  data: dict[str, Any] | None = None) -> int:
        """Append inside a transaction the caller already holds (so a change and its audit
        entry commit together)."""
        if not kind:
            raise ValueError("an audit entry needs a kind")
        # Redaction leaves plain JSON (string keys, lists): its canonical form reads back as
        # itself, so it is encoded once (``redacted_json``: the text of ``canonical_json(redact(data))``),
        # stored as it is and hashed as ``entry_hash`` would.
        data_json = redacted_json(data) if data else "{}"
        actor = _redacted_name(actor) if actor is not None else None
        ts = _now()
        seq, prev_hash, digest = self._advance(conn, ts, kind, actor, data_json)
        conn.execute(
            "INSERT INTO audit_log (seq, ts, kind, actor, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, kind, actor, data_json, prev_hash, digest),
        )
        if self.anchor is not None and self.anchor.due(seq):
            self.db.after_commit(self.checkpoint)
        return seq

    def _advance(self, conn: Connection, ts: str, kind: str, actor: str | None,
                 data_json: str) -> tuple[int, str, str]:
        """Move the head past one new entry; ``(seq, prev_hash, hash)`` of that entry. The head
        this log wrote last is tried first: the update names it, so it only succeeds while no
        one (another process, a rolled-back transaction) has moved the head since; else the
        head is read."""
        if self._head is not None:
            prev_seq, prev_hash = self._head
            digest = _chained_hash(prev_hash, prev_seq + 1, ts, kind, actor, data_json)
            if conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ? AND hash = ?",
                            (prev_seq + 1, digest, prev_seq, prev_hash)).rowcount == 1:
                self._head = (prev_seq + 1, digest)
                vouched = self._vouched
                extends = vouched is not None and vouched[2:] == (prev_seq, prev_hash)
                self._vouched = (*vouched[:2], prev_seq + 1, digest) if extends else None
                return prev_seq + 1, prev_hash, digest
        self._vouched = None  # the head was read back: someone else may have written before it
        head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        prev_seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS)
        digest = _chained_hash(prev_hash, prev_seq + 1, ts, kind, actor, data_json)
        conn.execute(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (prev_seq + 1, digest),
        )
        self._head = (prev_seq + 1, digest)
        return prev_seq + 1, prev_hash, digest

    def vouch(self, seq: int, head: str) -> None:
        """The chain up to ``seq`` (hash ``head``) was just anchored: this log vouches for what it
        chains on top of it from now on."""
        self._vouched = (seq, head, seq, head)

    def vouches(self, anchor_seq: int, anchor_head: str, seq: int, head: str) -> bool:
        """Whether every entry after the anchor ``(anchor_seq, anchor_head)`` up to the committed
        head ``(seq, head)`` was chained by this log itself, each on the head it wrote before.
        Then the head extends the anchor by construction and the entries need no re-reading: a
        rewrite by anyone else either moved the head (this log's next append read it back and
        stopped vouching) or left rows that no longer hash to it (``verify`` finds them). A
        write of this log that rolled back leaves the committed head behind the vouched one."""
        return self._vouched == (anchor_seq, anchor_head, seq, head)

    def checkpoint(self) -> None:
        """Anchor the committed head now (no-op without an anchor or once the database is closed)."""
        if self.anchor is not None and not self.db.closed:
            self.anchor.checkpoint(self)

    # --- reading -------------------------------------------------------------------------

    def entries(self, *, since_seq: int = 0, kind: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        sql = "SELECT * FROM audit_log WHERE seq > ?"
        params: list[Any] = [since_seq]
        if kind is not None:
            sql += " AND (kind = ? OR kind LIKE ?)"
            params += [kind, kind + ".%"]
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_entry(row) for row in self.db.query(sql, params)]

    def tail(self, limit: int = 20) -> list[AuditEntry]:
        rows = self.db.query("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", (limit,))
        return [_entry(row) for row in reversed(rows)]

    def _iter_rows(self) -> Iterator[Any]:
        yield from self.db.query("SELECT * FROM audit_log ORDER BY seq")

    # --- verification --------------------------------------------------------------------

    def verify(self) -> AuditVerdict:
        """Walk the chain; name the first entry that was edited, deleted, inserted or moved.
        With an anchor, also check the chain against every anchor (naming the first that
        disagrees) and, when all is well, anchor the head."""
        rows = list(self._iter_rows())
        verdict = self._verify_chain(rows)
        if self.anchor is None or not verdict.ok:
            return verdict
        check = self.anchor.check({row["seq"]: row["hash"] for row in rows}, verdict.entries)
        if not check.ok:
            return AuditVerdict(False, verdict.entries, check.first_bad_seq, check.reason, verdict.head_hash,
                                check.anchors, check.anchored_seq)
        latest = self.anchor.checkpoint(self)  # verified: the head may be anchored
        return AuditVerdict(True, verdict.entries, None, f"chain intact; it agrees with {check.anchors} anchor(s)",
                            verdict.head_hash, check.anchors,
                            latest.seq if latest is not None else check.anchored_seq)

    def _verify_chain(self, rows: list[Any]) -> AuditVerdict:
        position = {row["hash"]: row["seq"] for row in rows}
        head = self.db.query_one("SELECT seq, hash FROM audit_head WHERE id = 1")
        prev_hash, expected, count = GENESIS, 1, 0
        for row in rows:
            bad = _check_row(row, expected, prev_hash, position)
            if bad is not None:
                return AuditVerdict(False, count, bad[0], bad[1], prev_hash)
            prev_hash, expected, count = row["hash"], expected + 1, count + 1
        if head is None and rows:
            return AuditVerdict(False, count, 1, "the audit head record is missing", prev_hash)
        if head is not None and (head["seq"] != count or head["hash"] != prev_hash):
            if head["seq"] > count:
                return AuditVerdict(False, count, count + 1,
                                    f"entries {count + 1}..{head['seq']} are missing (log truncated)", prev_hash)
            return AuditVerdict(False, count, head["seq"] + 1 if head["seq"] < count else count,
                                "the log does not end where the audit head says it does", prev_hash)
        return AuditVerdict(True, count, None, "chain intact", prev_hash)

    # --- export --------------------------------------------------------------------------

    def export(self, path: Path | str) -> int:
        """Write every entry as one JSON object a line; returns how many were written."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with target.open("w", encoding="utf-8") as out:
            for row in self._iter_rows():
                out.write(canonical_json(_entry(row).to_dict()) + "\n")
                count += 1
        return count


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(seq=row["seq"], ts=row["ts"], kind=row["kind"], actor=row["actor"],
                      data=json.loads(row["data"]), prev_hash=row["prev_hash"], hash=row["hash"])


def _check_row(row: Any, expected: int, prev_hash: str, position: dict[str, int]) -> tuple[int, str] | None:
    """``(first_bad_seq, reason)`` if ``row`` breaks the chain, else ``None``."""
    seq = row["seq"]
    if seq != expected:
        missing = f"entry {expected}" if seq == expected + 1 else f"entries {expected}..{seq - 1}"
        return expected, f"{missing} missing (deleted): entry {seq} follows entry {expected - 1}"
    try:
        data = json.loads(row["data"])
    except json.JSONDecodeError:
        return seq, f"entry {seq} has been edited: its data is not valid JSON"
    own_ok = entry_hash(row["prev_hash"], seq, row["ts"], row["kind"], row["actor"], data) == row["hash"]
    if row["prev_hash"] != prev_hash:
        earlier = position.get(row["prev_hash"])
        if earlier is not None and earlier < seq - 1:
            return earlier + 1, (f"entries {earlier + 1}..{seq - 1} were inserted: entry {seq} "
                                 f"chains to entry {earlier}")
        if earlier is not None and earlier > seq:
            return seq, f"entries were reordered: entry {seq} chains to entry {earlier}, which comes after it"
        if own_ok and seq > 1:
            return seq - 1, (f"entry {seq - 1} has been rewritten: its hash is not the one entry {seq} "
                             "recorded")
        return seq, f"entry {seq} does not chain to entry {seq - 1} (prev_hash mismatch)"
    if not own_ok:
        return seq, f"entry {seq} has been edited: its contents do not match its hash"
    return None


def audit_egress(audit: AuditLog, *, actor: str | None = None) -> Callable[[str, str, bool, str], None]:
    """An ``EgressGate.on_decision`` callback that writes every egress decision to ``audit``."""

    def on_decision(host: str, purpose: str, allowed: bool, reason: str) -> None:
        audit.append("egress", actor, {"host": host, "purpose": purpose, "allowed": allowed, "reason": reason})

    return on_decision
