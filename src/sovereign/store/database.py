"""SQLite in WAL mode with per-component, versioned, transactional migrations.

Every layer that stores data declares its own ordered list of migration scripts and calls
``Database.migrate(component, scripts)``; each script runs once, in one transaction, so a
failure leaves the schema as it was.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version   INTEGER NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (component, version)
)
"""


class Database:
    """A thread-safe handle on one SQLite file (or ``:memory:``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._tx_thread: int | None = None
        self._after_commit: list[Callable[[], None]] = []
        self.closed = False
        for pragma in (
            "PRAGMA busy_timeout=10000",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
        ):
            self._conn.execute(pragma)
        self._enable_wal()
        self._conn.execute(_BOOTSTRAP)

    def _enable_wal(self) -> None:
        """Switch to WAL. Processes opening a fresh file at once contend for the switch, and
        SQLite answers "database is locked" there without waiting on the busy timeout (a lock
        upgrade it cannot wait for), so the switch is retried for up to the same 10 s."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for extensions (e.g. sqlite-vec) that must be loaded into it."""
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block atomically: everything commits, or nothing does."""
        committed = False
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._tx_thread = threading.get_ident()
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
                committed = True
            finally:
                self._tx_thread = None
                callbacks, self._after_commit = self._after_commit, []
        if committed:
            for callback in callbacks:
                callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction this thread is in commits (never if it rolls
        back); outside a transaction, call it now."""
        if self._tx_thread == threading.get_ident():
            self._after_commit.append(callback)
        else:
            callback()

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """Run one statement in its own implicit transaction."""
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def migrate(self, component: str, scripts: Sequence[str]) -> None:
        """Apply the scripts of ``component`` not applied yet, each in its own transaction.

        The applied version is re-read inside each write transaction, so processes opening a
        fresh database at the same moment never run a script twice."""
        with self._lock:
            for version, script in enumerate(scripts, start=1):
                if version <= self._applied_version(self._conn, component):
                    continue
                with self.transaction() as conn:
                    if version <= self._applied_version(conn, component):
                        continue
                    for statement in _split_statements(script):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                        (component, version),
                    )

    @staticmethod
    def _applied_version(conn: sqlite3.Connection, component: str) -> int:
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?",
            (component,),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self.closed = True


def _split_statements(script: str) -> list[str]:
    """Split a script on statement boundaries (``executescript`` would commit mid-way)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
