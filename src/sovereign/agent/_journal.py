"""The governed model's writes inside a run's own transactions (a ``governance.journal.Journal``).

The spend reservation is committed together with the steps staged before the model call (the
commit the loop makes there anyway); the settlement (ledger row, settled reservation, audit
entry) is staged for the run's next commit. So governance adds no commit to a step. When the run
store and the governor use different databases, each write gets its own transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sovereign.governance.journal import DirectJournal, Write
from sovereign.store import Database

if TYPE_CHECKING:
    from sovereign.agent._loop import Session

__all__ = ["SessionJournal"]


class SessionJournal:
    """Writes of the governor's database ``db`` joined to ``session``'s commits when it can."""

    def __init__(self, db: Database) -> None:
        self.direct = DirectJournal(db)
        self.session: Session | None = None

    def _joined(self) -> Session | None:
        session = self.session
        if session is None or not session.runner.shares_database(self.direct.db):
            return None
        return session

    def now(self, write: Write) -> Any:
        session = self._joined()
        if session is None:
            if self.session is not None:
                self.session.commit()  # the steps before the call are stored before it, as always
            return self.direct.now(write)
        return session.commit_with(write)

    def later(self, write: Write) -> None:
        session = self._joined()
        if session is None:
            self.direct.now(write)
        else:
            session.defer(write)
