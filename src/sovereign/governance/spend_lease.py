"""Budget leases: one reservation that a run's model calls draw from, instead of one each.

A call reserved on its own costs a full cap check (every applicable cap read) and a reservation
row written, then updated when it settles. A run makes many calls for the same subjects, so
its ``SpendLease`` reserves a slice of every cap's headroom once — an ordinary open row in
``spend_reservations``, checked and committed like any reservation — and each call's worst
case is drawn from that slice in memory. Other processes see the whole slice as reserved, so
together they still cannot pass a cap: caps hold across threads and processes exactly as
before, only the reserved amount is bigger while the run lasts.

Each call still takes the governed path's transactions (see ``governor``): the draw runs inside
the commit made before the call, and reads one number there — the caps' version — so a cap set,
changed or removed by anyone applies from the next call, as without a lease. A settlement writes
nothing of its own: the call's ledger row (same transaction) names the lease's row, and the row
keeps holding the settled spend — counted against every cap as reserved — until the lease
closes and folds its ledger rows into the running totals (``spend_fold``). Nothing settled is
lost if the process dies: the row then holds its whole slice until it expires, and is folded
then (``SpendGuard.reservation_ttl_s``).

The slice: ``LEASE_CALLS`` times the call's worst case, but never more than ``LEASE_SHARE`` of
what the tightest cap has left (a run does not starve the others) and never less than the call
needs. It grows when a call does not fit, and starts afresh (closed, then reserved anew) on a
new day, on a cap change and before it would expire. When something must start afresh while
another call of the run is still in flight, the call is reserved on its own instead.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from sqlite3 import Connection

from sovereign.governance.spend import Reservation, SpendGuard

__all__ = ["LEASE_CALLS", "LEASE_SHARE", "SpendLease"]

LEASE_CALLS = 32
"""How many calls like the current one a lease asks room for at a time."""
LEASE_SHARE = 0.25
"""The most of a cap's remaining headroom one lease takes beyond what its call needs."""


@functools.lru_cache(maxsize=8)
def _day_ends(day: str) -> float:
    """The epoch second at which the UTC day ``day`` (``YYYY-MM-DD``) ends (each day parsed once:
    every lease asks)."""
    return (datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)).timestamp()


@dataclass
class SpendLease:
    """The lease of one run's calls for the subjects ``key_id``, ``owner_id``, ``agent_id`` (see
    the module docstring). In-memory state changes only once the transaction that wrote the
    matching rows commits."""

    guard: SpendGuard
    key_id: str | None
    owner_id: str | None
    agent_id: str | None
    row: Reservation | None = None
    """The open reservation row this lease holds (None before the first call or once closed)."""
    held_usd: float = 0.0
    held_tokens: int = 0
    """What the row holds for calls to come: granted, less what was settled (the row holds both)."""
    drawn_usd: float = 0.0
    drawn_tokens: int = 0
    """The worst cases of the calls in flight."""
    settled_usd: float = 0.0
    settled_tokens: int = 0
    clock: Callable[[], float] = field(default=time.time, repr=False)
    """Epoch seconds now (tests move it)."""
    version: int = -1
    renew_at: float = 0.0
    """When the row starts afresh: half its time to live, or the end of its day if sooner."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- drawing ---------------------------------------------------------------------------

    def draw_in(self, conn: Connection, cost_usd: float, tokens: int) -> Reservation:
        """Cover one call's worst case inside the transaction ``conn`` (the one committed before
        the call): from the lease when it can, else from a fresh or grown lease, else (another
        call in flight while the lease must start afresh) as a reservation of its own.
        ``CapExceededError`` when the call does not fit under a cap."""
        guard = self.guard
        version = guard.caps_version_in(conn)
        with self._lock:
            row, drawn = self.row, self.drawn_usd > 0 or self.drawn_tokens > 0
            stale = row is not None and (version != self.version or self.clock() >= self.renew_at)
            if stale and drawn:
                return guard.reserve_in(conn, self.key_id, self.owner_id, self.agent_id, cost_usd, tokens)
            need_usd = max(0.0, cost_usd - (self.held_usd - self.drawn_usd))
            need_tokens = max(0, tokens - (self.held_tokens - self.drawn_tokens))
        if stale:
            guard.close_lease_in(conn, row)
            row, need_usd, need_tokens = None, cost_usd, tokens
        grant: tuple[float, int] = (0.0, 0)
        if row is None:
            row = Reservation("lease_" + uuid.uuid4().hex, self.key_id, self.owner_id, self.agent_id, 0.0, 0)
        if row.day == "" or need_usd > 0 or need_tokens > 0:
            grant = guard.grant_in(conn, row, need_usd, need_tokens, cost_usd * LEASE_CALLS, tokens * LEASE_CALLS,
                                   LEASE_SHARE)
        guard.db.after_commit(lambda: self._drawn(row, stale, version, grant, cost_usd, tokens))
        return Reservation(row.id, self.key_id, self.owner_id, self.agent_id, float(cost_usd), int(tokens),
                           day=row.day, lease=self)

    def _drawn(self, row: Reservation, fresh: bool, version: int, grant: tuple[float, int],
               cost_usd: float, tokens: int) -> None:
        with self._lock:
            if fresh or self.row is not row:
                self.row, self.held_usd, self.held_tokens = row, 0.0, 0
                self.settled_usd, self.settled_tokens = 0.0, 0
                self.renew_at = min(self.clock() + self.guard.reservation_ttl_s / 2, _day_ends(row.day))
            self.version = version
            self.held_usd += grant[0]
            self.held_tokens += grant[1]
            self.drawn_usd += cost_usd
            self.drawn_tokens += tokens

    # --- the end of a call -----------------------------------------------------------------

    def settle_in(self, conn: Connection, call: Reservation, cost_usd: float, tokens: int) -> None:
        """Settle a call drawn from this lease inside ``conn``'s transaction, which also writes the
        call's ledger row naming ``call.id`` (the lease's row): the spend stays held by the row
        and is folded into the totals when the lease closes. The row's hold is raised only when
        the settled spend outgrows it (a call that cost more than its worst case), and the row is
        read only when it may have closed (past the time the lease renews at). The lease's memory
        follows at once, and once only (a transaction retried after a rollback writes it again):
        should the write not commit, memory holds less than the row does, which only ever errs on
        the safe side."""
        with self._lock:
            if not call.done:
                self._undraw(call)
                if self.row is not None and self.row.id == call.id:
                    self.held_usd -= cost_usd
                    self.held_tokens -= tokens
                    self.settled_usd += cost_usd
                    self.settled_tokens += tokens
            current = self.row is not None and self.row.id == call.id
            may_be_closed = not current or self.clock() >= self.renew_at
            hold = None
            if current and (cost_usd > call.max_cost_usd or tokens > call.max_tokens):
                # only a call that cost more than its worst case can outgrow the slice: the row goes
                # on covering what was settled and the calls in flight (idempotent when retried)
                self.held_usd = max(self.held_usd, self.drawn_usd)
                self.held_tokens = max(self.held_tokens, self.drawn_tokens)
                hold = (self.settled_usd + self.held_usd, self.settled_tokens + self.held_tokens)
        self.guard.settle_drawn_in(conn, call, cost_usd, tokens, may_be_closed=may_be_closed, hold=hold)

    def release(self, call: Reservation) -> None:
        """The call failed or was abandoned: its worst case stops counting against the lease
        (the row keeps holding the lease's slice, to be drawn again or released at the end)."""
        with self._lock:
            self._undraw(call)
        call.done = True

    def _undraw(self, call: Reservation) -> None:
        if not call.done and (self.row is not None and self.row.id == call.id):
            self.drawn_usd = max(0.0, self.drawn_usd - call.max_cost_usd)
            self.drawn_tokens = max(0, self.drawn_tokens - call.max_tokens)
        call.done = True

    # --- the end of the run ----------------------------------------------------------------

    def close_in(self, conn: Connection) -> None:
        """End the lease inside ``conn``'s transaction: the unspent rest stops being held."""
        row = self.row
        if row is not None:
            self.guard.close_lease_in(conn, row)
            self.guard.db.after_commit(lambda: self._closed(row))

    def close(self) -> None:
        """``close_in`` in a transaction of its own (the agent runtime joins ``close_in`` to a
        run's final commit instead when it can; then this finds nothing left to close)."""
        if self.row is not None and not self.guard.db.closed:
            with self.guard.db.transaction() as conn:
                self.close_in(conn)

    def _closed(self, row: Reservation) -> None:
        with self._lock:
            if self.row is row:
                self.row, self.held_usd, self.held_tokens = None, 0.0, 0
