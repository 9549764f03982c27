"""WAL checkpoints off the writers' path.

SQLite's automatic checkpoint runs inside whichever commit crosses the threshold, so one commit
in a few hundred pays for copying the log into the database and syncing it (milliseconds on a
shared disk). A ``Checkpointer`` does that work on a daemon thread with its own connection
instead; the database's own connection turns its automatic checkpoints off. Checkpoints are
``PASSIVE``: they never block a reader or a writer, and one that cannot finish is retried.
"""

from __future__ import annotations

import sqlite3
import threading

__all__ = ["Checkpointer"]


class Checkpointer:
    def __init__(self, path: str, *, interval_s: float = 0.25) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_checkpoint_loop, args=(path, interval_s, self._stop),
                                        name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after a last checkpoint, so the log is folded back in)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def _checkpoint_loop(path: str, interval_s: float, stop: threading.Event) -> None:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        while True:
            stopping = stop.wait(interval_s)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                pass  # busy or closing: the next round (or the last connection's close) does it
            if stopping:
                return
    finally:
        conn.close()
