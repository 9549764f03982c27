"""Anchors for the audit chain: signed checkpoints of its head, kept outside the database.

The hash chain (``audit.py``) catches an edited entry, but whoever can write the database can
recompute every hash and the head record. An anchor is one line of an append-only JSONL file
(default ``HOME/audit-anchors.jsonl``)::

    {"seq", "head", "count", "ts", "key", "prev", "sig"}

``head`` is the chain's hash at entry ``seq`` (``count`` entries then), ``prev`` the SHA-256 of
the previous line (so a line removed from the middle shows), ``key`` the signing key's id and
``sig`` an Ed25519 signature of the rest, made with a key in its own file (default
``HOME/audit-anchor.key``, mode 0600) that the database never holds. Anchors are written every
``every`` entries (after the entry commits), by the server on a timer, at shutdown and after each
successful verification. ``check`` then proves the chain agrees with every anchor: a chain
rewritten consistently disagrees at the first anchor after the rewrite, a chain truncated below
an anchor is shorter than that anchor, and a forged or edited line fails its signature.

What anchors cannot do: entries written since the last anchor can still be rewritten, and
deleting both the key and the anchor file starts a fresh trust root. Keep a copy of the public
key and of the latest anchor elsewhere (``sovereign audit anchor`` prints them).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sovereign.errors import ConfigError
from sovereign.store.secret_file import create_secret_file

if TYPE_CHECKING:
    from sovereign.governance.audit import AuditLog

__all__ = ["Anchor", "AnchorCheck", "AuditAnchor", "anchor_periodically", "key_id", "load_or_create_key"]

log = logging.getLogger("sovereign.audit")

_GENESIS = "0" * 64
_TAIL_BYTES = 8192


def load_or_create_key(path: Path, *, create: bool) -> Ed25519PrivateKey | None:
    """The signing key in ``path`` (PKCS#8 PEM); created with mode 0600 when absent and
    ``create``; ``None`` when absent otherwise."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"the audit anchor key {path} is readable by others (mode {mode:o}); "
                              f"run: chmod 600 {path}")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"the audit anchor key {path} is not an Ed25519 private key")
        return key
    if not create:
        return None
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if not create_secret_file(path, pem):  # another process created it first
        return load_or_create_key(path, create=False)
    return key


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Anchor:
    """One signed checkpoint: the chain had ``count`` entries and hash ``head`` at ``seq``."""

    seq: int
    head: str
    count: int
    ts: str
    key: str
    prev: str
    sig: str = ""

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "head": self.head, "count": self.count, "ts": self.ts,
                "key": self.key, "prev": self.prev}

    def line(self) -> str:
        return _canonical({**self.body(), "sig": self.sig}).decode()

    @classmethod
    def parse(cls, line: str) -> Anchor:
        data = json.loads(line)
        return cls(seq=int(data["seq"]), head=str(data["head"]), count=int(data["count"]), ts=str(data["ts"]),
                   key=str(data["key"]), prev=str(data["prev"]), sig=str(data["sig"]))


@dataclass(frozen=True, slots=True)
class AnchorCheck:
    """The outcome of checking a chain against its anchors."""

    ok: bool
    anchors: int
    """Anchor lines that were checked and agreed with the chain."""
    anchored_seq: int | None = None
    """The latest anchored entry (everything up to it is proven unchanged)."""
    first_bad_seq: int | None = None
    reason: str = "the chain agrees with every anchor"


class AuditAnchor:
    """Writes and checks the anchors of one audit log; safe across threads and processes."""

    def __init__(self, key_path: Path, anchor_path: Path, *, every: int = 1000) -> None:
        self.key_path = Path(key_path)
        self.anchor_path = Path(anchor_path)
        self.every = every
        self._lock = threading.Lock()
        # A new installation gets both files; one without the other is reported by ``check``.
        fresh = not self.key_path.exists() and not self.anchor_path.exists()
        self._key = load_or_create_key(self.key_path, create=fresh)
        if fresh:  # the first line anchors the empty chain, so an empty file means lines were removed
            with _FileLock(self.anchor_path) as handle:
                if self._tail(handle)[0] is None:
                    self._append(handle, 0, _GENESIS, None)
        last = self._tail()[1] if self.anchor_path.exists() else None
        self._anchored_seq = last.seq if last is not None else 0

    @property
    def public_key_pem(self) -> str:
        if self._key is None:
            raise ConfigError(f"the audit anchor key {self.key_path} is missing")
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    # --- writing -------------------------------------------------------------------------

    def due(self, seq: int) -> bool:
        """True when the entry ``seq`` is ``every`` entries past the last anchor."""
        return self.every > 0 and seq - self._anchored_seq >= self.every

    def checkpoint(self, audit: AuditLog) -> Anchor | None:
        """Anchor the committed head of ``audit``. Refuses (logs, returns ``None``) when the
        chain no longer agrees with the last anchor: a tampered chain is never blessed."""
        if self._key is None or not self.anchor_path.exists():
            log.error("audit anchor not written: %s", self._missing())
            return None
        with self._lock, _FileLock(self.anchor_path) as handle:
            text, last = self._tail(handle)
            if text is not None and last is None:
                log.error("audit anchor not written: the last anchor line is not valid "
                          "(run 'sovereign audit verify')")
                return None
            head = audit.db.query_one("SELECT seq, hash FROM audit_head WHERE id = 1")
            seq, digest = (head["seq"], head["hash"]) if head is not None else (0, _GENESIS)
            if last is not None and last.seq == seq and last.head == digest:
                self._anchored_seq = seq
                audit.vouch(seq, digest)
                return last
            base = (last.seq, last.head) if last is not None else (0, _GENESIS)
            # the entries since the last anchor are re-read and re-hashed unless this process
            # chained every one of them itself (a long stall on a busy server otherwise)
            problem = None if audit.vouches(*base, seq, digest) else self._disagreement(audit, last, seq)
            if problem is not None:
                log.error("audit anchor not written: %s (run 'sovereign audit verify')", problem)
                return None
            signed = self._append(handle, seq, digest, text)
            self._anchored_seq = seq
            audit.vouch(seq, digest)
            return signed

    def _append(self, handle: Any, seq: int, head: str, previous_line: str | None) -> Anchor:
        """Sign and append one anchor line (the file is locked by the caller)."""
        assert self._key is not None
        anchor = Anchor(seq=seq, head=head, count=seq, ts=_now(), key=key_id(self._key.public_key()),
                        prev=_line_hash(previous_line) if previous_line is not None else _GENESIS)
        signed = Anchor(**{**anchor.body(), "sig": self._key.sign(_canonical(anchor.body())).hex()})
        handle.seek(0, os.SEEK_END)
        handle.write((signed.line() + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())
        return signed

    def _disagreement(self, audit: AuditLog, last: Anchor | None, seq: int) -> str | None:
        """Why the chain's entries since ``last`` do not extend it, or ``None``."""
        from sovereign.governance.audit import entry_hash

        start = last.seq if last is not None else 0
        if seq < start:
            return f"the chain ends at entry {seq}, below the last anchor (entry {start})"
        prev = last.head if last is not None else _GENESIS
        rows = audit.db.query("SELECT * FROM audit_log WHERE seq >= ? AND seq <= ? ORDER BY seq", (start, seq))
        if start and (not rows or rows[0]["seq"] != start or rows[0]["hash"] != prev):
            return f"entry {start} is not the one anchored"
        for expected, row in enumerate(rows[1:] if start else rows, start=start + 1):
            if row["seq"] != expected or row["prev_hash"] != prev or row["hash"] != entry_hash(
                    row["prev_hash"], row["seq"], row["ts"], row["kind"], row["actor"], json.loads(row["data"])):
                return f"entry {expected} does not extend the anchored chain"
            prev = row["hash"]
        return None

    # --- checking ------------------------------------------------------------------------

    def check(self, hashes: Mapping[int, str], count: int) -> AnchorCheck:
        """Check every anchor line against a chain of ``count`` entries whose hash by seq is
        ``hashes`` (the chain itself already verified). Names the first disagreement."""
        missing = self._missing()
        if missing is not None:
            return AnchorCheck(False, 0, reason=missing)
        assert self._key is not None
        public, own_id = self._key.public_key(), key_id(self._key.public_key())
        with self.anchor_path.open("r", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        prev, good, anchored = _GENESIS, 0, 0
        for number, line in enumerate(lines, start=1):
            problem = _line_problem(line, number, prev, public, own_id)
            if isinstance(problem, str):
                return AnchorCheck(False, good, anchored or None, None, problem)
            anchor = problem
            if anchor.seq > count:
                return AnchorCheck(False, good, anchored or None, count + 1, (
                    f"entries {count + 1}..{anchor.seq} are missing: the chain ends at entry {count}, but "
                    f"anchor line {number} ({anchor.ts}) recorded entry {anchor.seq} (log truncated below an anchor)"))
            if anchor.seq > 0 and hashes.get(anchor.seq) != anchor.head:
                return AnchorCheck(False, good, anchored or None, anchor.seq, (
                    f"the chain was rewritten: entry {anchor.seq} is not the entry anchored on {anchor.ts} "
                    f"(anchor line {number}); the rewrite is within entries {anchored + 1}..{anchor.seq}"))
            prev, good, anchored = _line_hash(line), good + 1, anchor.seq
        if good == 0:
            return AnchorCheck(False, 0, reason=f"the anchor file {self.anchor_path} is empty (anchors were removed)")
        return AnchorCheck(True, good, anchored)

    def _missing(self) -> str | None:
        if self._key is None and not self.key_path.exists():
            return (f"the audit anchor key {self.key_path} is missing while the anchor file exists "
                    "(anchors cannot be checked)")
        if self._key is None:  # created by another process since this one started
            self._key = load_or_create_key(self.key_path, create=False)
        if not self.anchor_path.exists():
            return f"the audit anchor file {self.anchor_path} is missing (anchors were removed)"
        return None

    # --- the file ------------------------------------------------------------------------

    def _tail(self, handle: Any = None) -> tuple[str | None, Anchor | None]:
        """The file's last line and the anchor it holds if it is a well-signed one (``None, None``
        for an empty file)."""
        own = handle is None
        handle = handle or self.anchor_path.open("rb")
        try:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").splitlines()
        finally:
            if own:
                handle.close()
        if not lines:
            return None, None
        if self._key is None:
            return lines[-1], None
        public = self._key.public_key()
        try:
            anchor = Anchor.parse(lines[-1])
            public.verify(bytes.fromhex(anchor.sig), _canonical(anchor.body()))
        except (ValueError, KeyError, TypeError, InvalidSignature):
            return lines[-1], None
        return lines[-1], anchor


def _line_problem(line: str, number: int, prev: str, public: Ed25519PublicKey, own_id: str) -> Anchor | str:
    """The parsed anchor, or why line ``number`` cannot be trusted."""
    try:
        anchor = Anchor.parse(line)
    except (ValueError, KeyError, TypeError):
        return f"anchor line {number} is not a valid anchor (the anchor file was edited)"
    if anchor.key != own_id:
        return f"anchor line {number} (entry {anchor.seq}) was signed by another key ({anchor.key}, not {own_id})"
    try:
        public.verify(bytes.fromhex(anchor.sig), _canonical(anchor.body()))
    except (InvalidSignature, ValueError):
        return f"anchor line {number} (entry {anchor.seq}) has a bad signature: it was forged or edited"
    if anchor.prev != prev:
        return (f"anchor line {number} (entry {anchor.seq}) does not follow line {number - 1}: "
                "anchor lines were removed or reordered")
    return anchor


class _FileLock:
    """The anchor file opened for reading and appending, under an exclusive ``flock``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> Any:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self.handle = os.fdopen(fd, "r+b")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self.handle

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()


async def anchor_periodically(audit: AuditLog, interval_s: float) -> None:
    """Anchor ``audit``'s head every ``interval_s`` seconds until cancelled (the server's timer,
    so a quiet server's last entries do not wait for ``every`` more)."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(audit.checkpoint)
