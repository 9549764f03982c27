"""Where the governed path's writes go: now (before a model call acts) or later (with the caller's
next commit).

The governed model writes twice per call: the spend reservation, which must be committed before
the call starts, and the settlement (ledger row, settled reservation, ``model.call`` audit entry),
which may wait for the caller's next commit. A ``Journal`` says how. ``DirectJournal`` gives each
write its own transaction; the agent runtime passes one that folds both into the transactions
that store its steps (one commit per stage of a turn, not three).
"""

from __future__ import annotations

from collections.abc import Callable
from sqlite3 import Connection
from typing import Any, Protocol

from sovereign.store import Database

__all__ = ["DirectJournal", "Journal", "Write"]

Write = Callable[[Connection], Any]
"""A function that writes inside a transaction it is handed (and may return a value)."""


class Journal(Protocol):
    def now(self, write: Write) -> Any:
        """Commit ``write`` before returning and return its value; if it raises, nothing of it
        is stored and the error propagates."""
        ...

    def later(self, write: Write) -> None:
        """Commit ``write`` no later than the owner's next commit (at once if it has none)."""
        ...


class DirectJournal:
    """Every write in its own transaction, at once."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def now(self, write: Write) -> Any:
        with self.db.transaction() as conn:
            return write(conn)

    def later(self, write: Write) -> None:
        self.now(write)
