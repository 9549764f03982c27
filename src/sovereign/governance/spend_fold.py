"""Spend settled through a budget lease: held in the lease's row while the lease is open, folded
into the running totals when it closes — or, after a crash, when its row expires.

A lease (``spend_lease``) settles a call without touching the running totals or its own row:
the call's ledger row, written in the settlement's transaction anyway, names the lease's row
(``usage_ledger.reservation``). Until the lease closes, the row keeps holding its whole slice,
so every cap check still counts the settled spend — as reserved instead of spent — and no
process can pass a cap. Closing the row (at the run's end, or when the lease starts afresh)
sums its ledger rows, adds them to the running totals and marks the row settled with that sum,
in one transaction. A process that dies with an open lease leaves the row holding its slice
until it expires; the first cap check or report after that folds the row the same way
(``sweep_in``), so the totals always end up equal to the ledger.

Reports (``SpendGuard.status``, ``cap_statuses``, ``spent_today``) count the ledger rows of
open leases as spent, not reserved (``open_spend_in``): what they show is what was spent.
"""

from __future__ import annotations

from collections.abc import Callable
from sqlite3 import Connection

__all__ = ["LEASE_PREFIX", "LeaseRows"]

LEASE_PREFIX = "lease_"
"""The id prefix of a lease's reservation row (a call reserved on its own is ``res_…``)."""

_SUBJECT_COLUMN = {"key": "key_id", "agent": "agent_id", "owner": "owner_id"}

AddTotals = Callable[[Connection, tuple[str | None, str | None, str | None], str, float, int], None]
"""Adds a settled amount to the running totals of ``(key_id, owner_id, agent_id)`` for a day."""


class LeaseRows:
    """The SQL of lease rows whose settled spend lives in the ledger until they close."""

    def __init__(self, add_totals: AddTotals) -> None:
        self._add_totals = add_totals
        self._ledger = False

    def ledger_ready(self, conn: Connection) -> bool:
        """Whether the database has the ledger with its ``reservation`` column (a ``SpendGuard``
        used alone has none: its leases then fold nothing); once seen, remembered."""
        if not self._ledger:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(usage_ledger)")}
            self._ledger = "reservation" in columns
        return self._ledger

    def ledger_mark(self, conn: Connection) -> int:
        """The ledger's last row id: a lease opened now folds only rows after it."""
        if not self.ledger_ready(conn):
            return 0
        return conn.execute("SELECT COALESCE(MAX(id), 0) FROM usage_ledger").fetchone()[0]

    def settled_through(self, conn: Connection, lease_id: str, ledger_from: int) -> tuple[float, int]:
        """``(usd, tokens)`` of the ledger rows settled through the lease row ``lease_id``."""
        if not self.ledger_ready(conn):
            return 0.0, 0
        row = conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(prompt_tokens + completion_tokens), 0) "
            "FROM usage_ledger WHERE id > ? AND reservation = ?", (ledger_from or 0, lease_id)).fetchone()
        return float(row[0]), int(row[1])

    def close_in(self, conn: Connection, lease_id: str, stamp: str) -> tuple[float, int] | None:
        """Close the lease row ``lease_id`` if it is still open: its ledger rows join the running
        totals and the row keeps their sum as settled. Returns that sum, or None when the row was
        no longer open (closed or swept before: its spend was folded then)."""
        row = conn.execute("SELECT key_id, owner_id, agent_id, day, ledger_from FROM spend_reservations "
                           "WHERE id = ? AND status = 'open'", (lease_id,)).fetchone()
        if row is None:
            return None
        usd, tokens = self.settled_through(conn, lease_id, row[4])
        conn.execute("UPDATE spend_reservations SET status = 'settled', usd = ?, tokens = ?, settled_at = ? "
                     "WHERE id = ?", (usd, tokens, stamp, lease_id))
        if usd or tokens:
            self._add_totals(conn, (row[0], row[1], row[2]), row[3], usd, tokens)
        return usd, tokens

    def is_open(self, conn: Connection, lease_id: str) -> bool:
        return conn.execute("SELECT 1 FROM spend_reservations WHERE id = ? AND status = 'open'",
                            (lease_id,)).fetchone() is not None

    def sweep_in(self, conn: Connection, now_stamp: str) -> int:
        """Fold every lease row that expired open (its process died or stalled); how many."""
        expired = [row[0] for row in conn.execute(
            "SELECT id FROM spend_reservations INDEXED BY spend_res_open "
            "WHERE status = 'open' AND expires_at <= ? AND id >= ? AND id < ?",
            (now_stamp, LEASE_PREFIX, LEASE_PREFIX[:-1] + chr(ord(LEASE_PREFIX[-1]) + 1)))]
        for lease_id in expired:
            self.close_in(conn, lease_id, now_stamp)
        return len(expired)

    def open_spend_in(self, conn: Connection, scope: str, subject: str | None, day: str | None,
                      now_stamp: str) -> dict[str, tuple[float, int]]:
        """Spend settled through open (unexpired) leases, ``subject → (usd, tokens)``, for the
        subjects of ``scope`` (just ``subject`` when given; ``'*'`` for global), on ``day``
        (every day when None)."""
        if not self.ledger_ready(conn):
            return {}
        column = "'*'" if scope == "global" else "r." + _SUBJECT_COLUMN[scope]
        clauses, params = ["r.status = 'open'", "r.expires_at > ?", "r.id >= ?", "r.id < ?"], [
            now_stamp, LEASE_PREFIX, LEASE_PREFIX[:-1] + chr(ord(LEASE_PREFIX[-1]) + 1)]
        if scope != "global":
            clauses.append(f"{column} IS NOT NULL")
            if subject is not None:
                clauses.append(f"{column} = ?")
                params.append(subject)
        if day is not None:
            clauses.append("r.day = ?")
            params.append(day)
        rows = conn.execute(
            f"SELECT {column}, SUM(l.cost_usd), SUM(l.prompt_tokens + l.completion_tokens) "
            "FROM spend_reservations AS r INDEXED BY spend_res_open "
            "JOIN usage_ledger AS l ON l.id > COALESCE(r.ledger_from, 0) AND l.reservation = r.id "
            f"WHERE {' AND '.join(clauses)} GROUP BY 1", params).fetchall()
        return {row[0]: (float(row[1] or 0.0), int(row[2] or 0)) for row in rows}
