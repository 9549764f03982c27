"""The approvals queue: risky tool calls wait here, persisted in SQLite, until a human decides.

``ApprovalQueue.decide`` inserts a pending request and polls the database until it is
approved, denied or times out, so the decision may come from any process sharing the database
(the ``sovereign approvals`` CLI, the ``/v1/approvals`` API, another server).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sovereign.errors import InvalidRequestError, NotFoundError
from sovereign.governance.audit import AuditLog
from sovereign.store import Database

__all__ = ["Approval", "ApprovalQueue", "Status", "MIGRATIONS"]

Status = Literal["pending", "approved", "denied", "expired", "cancelled"]

MIGRATIONS = [
    """
    CREATE TABLE approvals (
        id         TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL,
        tool_name  TEXT NOT NULL,
        arguments  TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
        reason     TEXT,
        decided_by TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        decided_at TEXT
    );
    CREATE INDEX approvals_by_status ON approvals (status, created_at);
    CREATE INDEX approvals_by_run ON approvals (run_id);
    """,
    # The run's owner (identity id): only they, or an admin, see and decide the request.
    """
    ALTER TABLE approvals ADD COLUMN owner TEXT;
    CREATE INDEX approvals_by_owner ON approvals (owner, status, created_at);
    """,
]

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    run_id: str
    tool_name: str
    arguments: str
    status: Status
    reason: str | None
    decided_by: str | None
    created_at: str
    decided_at: str | None
    owner: str | None = None
    """Identity id of the run's owner."""

    def visible_to(self, identity_id: str, role: str) -> bool:
        """Whether that identity may see and decide this request (its run's owner, or an admin)."""
        return role == "admin" or (self.owner is not None and self.owner == identity_id)

    def to_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in self.__slots__}


class ApprovalQueue:
    """Pending tool-call approvals; implements the agent runtime's ``decide`` protocol."""

    def __init__(self, db: Database, *, poll_interval: float = 0.1, timeout: float | None = None,
                 audit: AuditLog | None = None) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.audit = audit or AuditLog(db)  # every request and decision lands in the audit trail
        db.migrate("approvals", MIGRATIONS)

    # --- the agent's side -----------------------------------------------------------------

    def request(self, run_id: str, tool_name: str, arguments: str | dict[str, Any], *,
                owner: str | None = None) -> Approval:
        """Record a pending request and return it (without waiting). ``owner``: the run owner's
        identity id; by default read from the stored run."""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, sort_keys=True, default=str)
        approval_id = "apr_" + uuid.uuid4().hex[:12]
        with self.db.transaction() as conn:
            if owner is None:
                owner = _run_owner(conn, run_id)
            conn.execute(
                "INSERT INTO approvals (id, run_id, tool_name, arguments, owner) VALUES (?, ?, ?, ?, ?)",
                (approval_id, run_id, tool_name, arguments, owner),
            )
            self.audit.append_in(conn, "approval.requested", None, {
                "approval": approval_id, "run_id": run_id, "owner": owner, "tool": tool_name,
                "arguments": arguments})
        return self.get(approval_id)

    async def wait(self, approval_id: str, *, timeout: float | None = None) -> Approval:
        """Poll until ``approval_id`` is decided; on timeout it is marked ``expired``."""
        limit = self.timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        try:
            while True:
                approval = self.get(approval_id)
                if approval.status != "pending":
                    return approval
                if deadline is not None and time.monotonic() >= deadline:
                    self._close(approval_id, "expired", f"no decision within {limit:g}s", "system")
                    return self.get(approval_id)
                await asyncio.sleep(self.poll_interval)
        except asyncio.CancelledError:
            self._close(approval_id, "cancelled", "the run stopped waiting", "system")
            raise

    async def decide(self, run_id: str, tool_name: str, arguments: str | dict[str, Any]) -> bool:
        """Ask a human: insert a pending request, wait for the decision; True only if approved."""
        approval = self.request(run_id, tool_name, arguments)
        decided = await self.wait(approval.id)
        return decided.status == "approved"

    # --- the human's side -----------------------------------------------------------------

    def approve(self, approval_id: str, *, decided_by: str = "cli", reason: str | None = None) -> Approval:
        return self._decide(approval_id, "approved", reason, decided_by)

    def deny(self, approval_id: str, *, decided_by: str = "cli", reason: str | None = None) -> Approval:
        return self._decide(approval_id, "denied", reason, decided_by)

    def get(self, approval_id: str) -> Approval:
        row = self.db.query_one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        if row is None:
            raise NotFoundError(f"no approval request with id '{approval_id}'")
        return Approval(**dict(row))

    def list(self, status: Status | None = "pending", *, run_id: str | None = None,
             owner: str | None = None, limit: int = 100) -> list[Approval]:
        """Requests, oldest first; ``status=None`` lists every status, ``owner`` (an identity id)
        only that owner's."""
        clauses, params = [], []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.query(
            f"SELECT * FROM approvals {where} ORDER BY created_at, rowid LIMIT ?", (*params, limit)
        )
        return [Approval(**dict(row)) for row in rows]

    # --- internals ------------------------------------------------------------------------

    def _decide(self, approval_id: str, status: Status, reason: str | None, decided_by: str) -> Approval:
        if not self._close(approval_id, status, reason, decided_by):
            current = self.get(approval_id)  # raises NotFoundError for an unknown id
            raise InvalidRequestError(
                f"approval '{approval_id}' is already {current.status}; only pending requests can be decided"
            )
        return self.get(approval_id)

    def _close(self, approval_id: str, status: Status, reason: str | None, decided_by: str) -> bool:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE approvals SET status = ?, reason = ?, decided_by = ?, decided_at = {_NOW} "
                "WHERE id = ? AND status = 'pending'",
                (status, reason, decided_by, approval_id),
            )
            if cursor.rowcount != 1:
                return False
            self.audit.append_in(conn, "approval.decided", decided_by, {
                "approval": approval_id, "status": status, "reason": reason})
        return True


def _run_owner(conn: Any, run_id: str) -> str | None:
    """The owner of a stored run (the agent runtime's ``runs`` table), if there is one."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is None:
        return None
    row = conn.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row is not None else None
