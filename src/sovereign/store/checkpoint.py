"""Write-ahead-log checkpoints in a background thread, so that no commit waits for one.

In WAL mode every commit appends pages to the log; a checkpoint copies them into the database
file and syncs both. SQLite runs it inside whichever commit pushes the log past
``wal_autocheckpoint`` pages, so that commit (one agent step, one HTTP request) pays for all
the copying and the syncs. A ``Checkpointer`` runs a ``PASSIVE`` checkpoint on its own connection
every ``every`` commits instead: writers and readers go on meanwhile, and a commit is exactly as
durable as before (with ``synchronous=NORMAL`` a commit never syncs; only checkpoints do). The
database keeps a large ``wal_autocheckpoint`` as the backstop, should the thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["BACKSTOP_PAGES", "Checkpointer"]

log = logging.getLogger(__name__)

BACKSTOP_PAGES = 20000
"""``wal_autocheckpoint`` of a database with a checkpointer: a commit checkpoints by itself only
when the log has grown past this many pages (~80 MB) without the thread catching up."""


class Checkpointer:
    """Checkpoints the database at ``path`` every ``every`` commits (``committed`` counts them),
    from a daemon thread started on first need."""

    def __init__(self, path: str, *, every: int = 64) -> None:
        self.path = path
        self.every = every
        self._count = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        """Count one commit (called under the database's lock); wake the thread when due."""
        self._count += 1
        if self._count < self.every:
            return
        self._count = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sovereign-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or locked: the next round (or the backstop) catches up
                    log.debug("background checkpoint skipped: %s", exc)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and close its connection."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout=10)
