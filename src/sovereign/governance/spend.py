"""Hard spend caps, in money and tokens, per key, agent, owner and for everything per day.

Enforced *before* dispatch with a reservation: ``reserve`` takes the worst case (the most the
request could cost, the most tokens it could use), checks every applicable cap against settled
spend plus open reservations, and records the reservation — all inside one ``BEGIN IMMEDIATE``
transaction, so concurrent requests (threads or processes sharing the database) can never push
spend over a cap. After the call, ``settle`` replaces the reservation by the actual cost;
``release`` drops it when the call never happened.

A key's own ``max_spend_usd`` scope is a cap too (scope ``key``, period ``total``).

Intended use (server / agent runtime)::

    with guard.hold(key_id=p.key_id, owner_id=p.spend_owner_id, agent_id=agent_id,
                    max_cost_usd=worst_case_usd, max_tokens=prompt_tokens + max_tokens) as held:
        response = await model.complete(request)
        held.settle(cost_usd, response.usage.total_tokens)
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from sqlite3 import Connection
from typing import TYPE_CHECKING, Any, Literal

from sovereign.errors import InvalidRequestError, NotFoundError, SpendCapExceededError
from sovereign.governance.spend_fold import LeaseRows
from sovereign.store import Database

if TYPE_CHECKING:
    from sovereign.governance.audit import AuditLog

__all__ = ["Cap", "CapExceededError", "CapStatus", "Reservation", "SpendGuard", "SpendStatus"]

Scope = Literal["key", "agent", "owner", "global"]
Period = Literal["day", "total"]
SCOPES: tuple[str, ...] = ("key", "agent", "owner", "global")
PERIODS: tuple[str, ...] = ("day", "total")
GLOBAL = "*"
_EPS = 1e-12

_TOTALS_COLUMNS = """
        scope   TEXT NOT NULL,
        subject TEXT NOT NULL,
        day     TEXT NOT NULL,
        usd     REAL NOT NULL,
        tokens  INTEGER NOT NULL,
        PRIMARY KEY (scope, subject, day)
"""

MIGRATIONS = [
    """
    CREATE TABLE spend_caps (
        scope      TEXT NOT NULL CHECK (scope IN ('key', 'agent', 'owner', 'global')),
        subject    TEXT NOT NULL,
        period     TEXT NOT NULL CHECK (period IN ('day', 'total')),
        max_usd    REAL CHECK (max_usd IS NULL OR max_usd >= 0),
        max_tokens INTEGER CHECK (max_tokens IS NULL OR max_tokens >= 0),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (scope, subject, period)
    );
    CREATE TABLE spend_reservations (
        id          TEXT PRIMARY KEY,
        key_id      TEXT,
        owner_id    TEXT,
        agent_id    TEXT,
        day         TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('open', 'settled', 'released')),
        usd         REAL NOT NULL,
        tokens      INTEGER NOT NULL,
        expires_at  TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        settled_at  TEXT
    );
    CREATE INDEX spend_res_key ON spend_reservations (key_id, day);
    CREATE INDEX spend_res_owner ON spend_reservations (owner_id, day);
    CREATE INDEX spend_res_agent ON spend_reservations (agent_id, day);
    CREATE INDEX spend_res_day ON spend_reservations (day);
    """,
    # Settled spend as running totals per subject and day ('*' = all days), so a cap check reads
    # one row instead of summing every settled call of the day; open reservations (the calls in
    # flight) are still summed, through a partial index that holds only them.
    f"""
    CREATE TABLE spend_totals ({_TOTALS_COLUMNS});
    CREATE INDEX spend_res_open ON spend_reservations (expires_at) WHERE status = 'open';
    """ + "".join(
        f"""
    INSERT INTO spend_totals (scope, subject, day, usd, tokens)
    SELECT '{scope}', {column}, {day}, SUM(usd), SUM(tokens) FROM spend_reservations
    WHERE status = 'settled' AND {column} IS NOT NULL GROUP BY {column}{', day' if day == 'day' else ''};
    """
        for scope, column in (("key", "key_id"), ("agent", "agent_id"), ("owner", "owner_id"), ("global", "'*'"))
        for day in ("day", "'*'")
    ),
    # A counter bumped by every change of a cap (triggers, so edits from any process count): a
    # budget lease (``spend_lease``) reads it before each call it covers and re-checks on a change.
    """
    CREATE TABLE spend_caps_version (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO spend_caps_version (id, version) VALUES (1, 0);
    CREATE TRIGGER spend_caps_added AFTER INSERT ON spend_caps
    BEGIN UPDATE spend_caps_version SET version = version + 1; END;
    CREATE TRIGGER spend_caps_changed AFTER UPDATE ON spend_caps
    BEGIN UPDATE spend_caps_version SET version = version + 1; END;
    CREATE TRIGGER spend_caps_removed AFTER DELETE ON spend_caps
    BEGIN UPDATE spend_caps_version SET version = version + 1; END;
    """,
    # The running totals keyed by their primary key alone (no rowid table beside the key's
    # index): every settlement rewrites one b-tree instead of two.
    f"""
    CREATE TABLE spend_totals_keyed ({_TOTALS_COLUMNS}) WITHOUT ROWID;
    INSERT INTO spend_totals_keyed (scope, subject, day, usd, tokens)
    SELECT scope, subject, day, usd, tokens FROM spend_totals;
    DROP TABLE spend_totals;
    ALTER TABLE spend_totals_keyed RENAME TO spend_totals;
    """,
    # A lease row's settled spend stays in the ledger until the lease closes (``spend_fold``):
    # the ledger's last row id when the lease opened bounds what its close has to sum.
    "ALTER TABLE spend_reservations ADD COLUMN ledger_from INTEGER;",
]
# ``usd`` / ``tokens`` hold the worst case while a reservation is open, the actual once settled.


@dataclass(frozen=True, slots=True)
class Cap:
    scope: Scope
    subject: str
    period: Period
    max_usd: float | None = None
    max_tokens: int | None = None

    def label(self) -> str:
        who = "all spend" if self.scope == "global" else f"{self.scope} '{self.subject}'"
        return f"{'daily' if self.period == 'day' else 'total'} cap on {who}"


class CapExceededError(SpendCapExceededError):
    """A request would exceed ``cap``; carries the numbers so the API can show them."""

    def __init__(self, cap: Cap, *, unit: Literal["usd", "tokens"], limit: float, spent: float,
                 reserved: float, requested: float) -> None:
        if unit == "usd":
            text = (f"spend cap exceeded: {cap.label()} is ${limit:.6g}; current spend ${spent:.6g} "
                    f"(+ ${reserved:.6g} reserved by requests in flight); this request may cost up to "
                    f"${requested:.6g}")
        else:
            text = (f"token cap exceeded: {cap.label()} is {int(limit)} tokens; used {int(spent)} "
                    f"(+ {int(reserved)} reserved by requests in flight); this request may use up to "
                    f"{int(requested)}")
        super().__init__(text, param=f"{cap.scope}:{cap.period}:{unit}")
        self.cap, self.unit = cap, unit
        self.subjects: dict[str, str | None] = {}
        self.limit, self.spent, self.reserved, self.requested = limit, spent, reserved, requested

    def to_dict(self) -> dict:
        return {"scope": self.cap.scope, "subject": self.cap.subject, "period": self.cap.period,
                "unit": self.unit, "limit": self.limit, "spent": self.spent, "reserved": self.reserved,
                "requested": self.requested}


@dataclass(slots=True)
class Reservation:
    id: str
    key_id: str | None
    owner_id: str | None
    agent_id: str | None
    max_cost_usd: float
    max_tokens: int
    guard: SpendGuard | None = field(default=None, repr=False)
    done: bool = False
    day: str = ""
    """The day (UTC) it was made: its spend counts against that day's caps."""
    lease: Any = field(default=None, repr=False)
    """The ``SpendLease`` this call was drawn from (``id`` is then the lease's row), or None."""

    def settle(self, cost_usd: float, tokens: int) -> None:
        assert self.guard is not None
        self.guard.settle(self, cost_usd, tokens)

    def release(self) -> None:
        assert self.guard is not None
        self.guard.release(self)


@dataclass(frozen=True, slots=True)
class CapStatus:
    cap: Cap
    spent_usd: float
    reserved_usd: float
    spent_tokens: int
    reserved_tokens: int

    @property
    def remaining_usd(self) -> float | None:
        if self.cap.max_usd is None:
            return None
        return max(0.0, self.cap.max_usd - self.spent_usd - self.reserved_usd)

    @property
    def remaining_tokens(self) -> int | None:
        if self.cap.max_tokens is None:
            return None
        return max(0, self.cap.max_tokens - self.spent_tokens - self.reserved_tokens)

    def to_dict(self) -> dict:
        return {"scope": self.cap.scope, "subject": self.cap.subject, "period": self.cap.period,
                "max_usd": self.cap.max_usd, "max_tokens": self.cap.max_tokens,
                "spent_usd": self.spent_usd, "reserved_usd": self.reserved_usd,
                "remaining_usd": self.remaining_usd, "spent_tokens": self.spent_tokens,
                "reserved_tokens": self.reserved_tokens, "remaining_tokens": self.remaining_tokens}


@dataclass(frozen=True, slots=True)
class SpendStatus:
    """What a caller may see about its own spend: totals and every cap that applies to it."""

    today_usd: float
    today_tokens: int
    total_usd: float
    total_tokens: int
    caps: list[CapStatus]

    @property
    def remaining_usd(self) -> float | None:
        values = [c.remaining_usd for c in self.caps if c.remaining_usd is not None]
        return min(values) if values else None

    @property
    def remaining_tokens(self) -> int | None:
        values = [c.remaining_tokens for c in self.caps if c.remaining_tokens is not None]
        return min(values) if values else None

    def to_dict(self) -> dict:
        return {"today_usd": self.today_usd, "today_tokens": self.today_tokens,
                "total_usd": self.total_usd, "total_tokens": self.total_tokens,
                "remaining_usd": self.remaining_usd, "remaining_tokens": self.remaining_tokens,
                "caps": [c.to_dict() for c in self.caps]}


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class _Now:
    """One moment as the queries need it (formatted once per check, not once per cap)."""

    moment: datetime
    day: str
    stamp: str

    @classmethod
    def at(cls, moment: datetime) -> _Now:
        return cls(moment, moment.strftime("%Y-%m-%d"), _stamp(moment))


_SUBJECT_COLUMN = {"key": "key_id", "agent": "agent_id", "owner": "owner_id"}


class SpendGuard:
    """Caps and reservations in the shared database. ``reservation_ttl_s`` bounds how long an
    open reservation from a crashed process keeps holding budget."""

    def __init__(self, db: Database, *, audit: AuditLog | None = None,
                 reservation_ttl_s: float = 3600.0) -> None:
        self.db = db
        self.audit = audit
        self.reservation_ttl_s = reservation_ttl_s
        self._has_keys = False
        self.leases = LeaseRows(self._add_totals)
        """The SQL of lease rows (``spend_fold``)."""
        db.migrate("spend", MIGRATIONS)

    # --- caps ----------------------------------------------------------------------------

    def set_cap(self, scope: Scope, subject: str | None, period: Period = "day", *,
                max_usd: float | None = None, max_tokens: int | None = None,
                actor: str | None = None) -> Cap:
        """Create or replace a cap; both limits ``None`` removes it."""
        if scope not in SCOPES:
            raise InvalidRequestError(f"cap scope must be one of {', '.join(SCOPES)}, not '{scope}'", param="scope")
        if period not in PERIODS:
            raise InvalidRequestError(f"cap period must be 'day' or 'total', not '{period}'", param="period")
        subject = GLOBAL if scope == "global" else (subject or "")
        if not subject:
            raise InvalidRequestError(f"a {scope} cap needs a subject (the {scope} id)", param="subject")
        if (max_usd is not None and max_usd < 0) or (max_tokens is not None and max_tokens < 0):
            raise InvalidRequestError("cap limits must be zero or more", param="max_usd")
        cap = Cap(scope, subject, period, max_usd, max_tokens)
        with self.db.transaction() as conn:
            if max_usd is None and max_tokens is None:
                conn.execute("DELETE FROM spend_caps WHERE scope = ? AND subject = ? AND period = ?",
                             (scope, subject, period))
            else:
                conn.execute(
                    "INSERT INTO spend_caps (scope, subject, period, max_usd, max_tokens) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (scope, subject, period) DO UPDATE SET max_usd = excluded.max_usd, "
                    "max_tokens = excluded.max_tokens",
                    (scope, subject, period, max_usd, max_tokens),
                )
            if self.audit is not None:
                self.audit.append_in(conn, "cap.set", actor, {"scope": scope, "subject": subject, "period": period,
                                                              "max_usd": max_usd, "max_tokens": max_tokens})
        return cap

    def caps(self) -> list[Cap]:
        rows = self.db.query("SELECT * FROM spend_caps ORDER BY scope, subject, period")
        return [Cap(r["scope"], r["subject"], r["period"], r["max_usd"], r["max_tokens"]) for r in rows]

    def _applicable(self, conn: Connection, key_id: str | None, owner_id: str | None,
                    agent_id: str | None) -> list[Cap]:
        caps = [Cap(row["scope"], row["subject"], row["period"], row["max_usd"], row["max_tokens"]) for row in
                conn.execute("SELECT * FROM spend_caps WHERE (scope = 'global' AND subject = ?) "
                             "OR (scope = 'key' AND subject = ?) OR (scope = 'agent' AND subject = ?) "
                             "OR (scope = 'owner' AND subject = ?)",
                             (GLOBAL, key_id or "", agent_id or "", owner_id or "")).fetchall()]
        if key_id and self._keys_table(conn):
            key = conn.execute("SELECT scopes FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            limit = json.loads(key["scopes"]).get("max_spend_usd") if key is not None else None
            if limit is not None:
                caps.append(Cap("key", key_id, "total", float(limit), None))
        return caps

    def _keys_table(self, conn: Connection) -> bool:
        """Whether the database has API keys (whose ``max_spend_usd`` scope is a cap); once seen,
        remembered (tables are never dropped)."""
        if not self._has_keys:
            self._has_keys = _has_table(conn, "api_keys")
        return self._has_keys

    def _usage(self, conn: Connection, cap: Cap, now: _Now) -> tuple[float, float, int, int]:
        """``(spent_usd, reserved_usd, spent_tokens, reserved_tokens)`` counted against ``cap``:
        settled spend from the running totals, open reservations (not expired) summed."""
        day = now.day if cap.period == "day" else "*"
        clauses, params = ["status = 'open'", "expires_at > ?"], [now.stamp]
        if cap.scope != "global":
            clauses.append(f"{_SUBJECT_COLUMN[cap.scope]} = ?")
            params.append(cap.subject)
        if cap.period == "day":
            clauses.append("day = ?")
            params.append(day)
        row = conn.execute(
            "SELECT COALESCE(SUM(usd), 0), COALESCE(SUM(tokens), 0), "
            "(SELECT usd FROM spend_totals WHERE scope = ? AND subject = ? AND day = ?), "
            "(SELECT tokens FROM spend_totals WHERE scope = ? AND subject = ? AND day = ?) "
            f"FROM spend_reservations INDEXED BY spend_res_open WHERE {' AND '.join(clauses)}",
            [cap.scope, cap.subject, day, cap.scope, cap.subject, day, *params],
        ).fetchone()
        return float(row[2] or 0.0), float(row[0]), int(row[3] or 0), int(row[1])

    def _add_totals(self, conn: Connection, who: tuple[str | None, str | None, str | None], day: str, usd: float,
                    tokens: int) -> None:
        """Add settled spend to the running totals of each of its subjects ``who = (key_id,
        owner_id, agent_id)``, for its day and for all days."""
        key_id, owner_id, agent_id = who
        subjects = [(scope, subject) for scope, subject in (
            ("key", key_id), ("agent", agent_id), ("owner", owner_id), ("global", GLOBAL)) if subject]
        rows = [(scope, subject, when, usd, tokens) for scope, subject in subjects for when in (day, "*")]
        conn.execute(
            "INSERT INTO spend_totals (scope, subject, day, usd, tokens) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
            + " ON CONFLICT (scope, subject, day) DO UPDATE SET usd = usd + excluded.usd, "
            "tokens = tokens + excluded.tokens",
            [value for row in rows for value in row],
        )

    # --- reservations --------------------------------------------------------------------

    def reserve(self, principal_key_id: str | None, owner_id: str | None, agent_id: str | None,
                max_cost_usd: float, max_tokens: int, *, actor: str | None = None) -> Reservation:
        """Reserve the worst case against every applicable cap, or raise ``CapExceededError``."""
        try:
            with self.db.transaction() as conn:
                return self.reserve_in(conn, principal_key_id, owner_id, agent_id, max_cost_usd, max_tokens)
        except CapExceededError as exc:
            self.refused(exc, actor)
            raise

    def reserve_in(self, conn: Connection, key_id: str | None, owner_id: str | None, agent_id: str | None,
                   max_cost_usd: float, max_tokens: int) -> Reservation:
        """``reserve`` inside the caller's transaction (so a reservation commits with the caller's
        own writes). A refusal raises ``CapExceededError`` unaudited: the caller rolls back, then
        calls ``refused``."""
        if max_cost_usd < 0 or max_tokens < 0:
            raise InvalidRequestError("a reservation needs a non-negative cost and token count")
        now = _Now.at(_now())
        reservation = Reservation("res_" + uuid.uuid4().hex, key_id, owner_id, agent_id,
                                  float(max_cost_usd), int(max_tokens), self, day=now.day)
        self._room(conn, reservation, now)
        self._insert(conn, reservation, now)
        return reservation

    def _room(self, conn: Connection, res: Reservation, now: _Now) -> tuple[float, float]:
        """Check ``res`` against every cap that applies to its subjects (``CapExceededError``
        naming the first it would exceed) and return what the tightest caps have left after it,
        ``(usd, tokens)`` (``inf`` where uncapped)."""
        self.leases.sweep_in(conn, now.stamp)
        room_usd = room_tokens = math.inf
        for cap in self._applicable(conn, res.key_id, res.owner_id, res.agent_id):
            left_usd, left_tokens = self._check(conn, cap, now, res)
            room_usd, room_tokens = min(room_usd, left_usd), min(room_tokens, left_tokens)
        return room_usd, room_tokens

    # --- leases: one reservation row that many calls draw from (see ``spend_lease``) ----------

    def caps_version_in(self, conn: Connection) -> int:
        """A number that changes whenever any cap is set, changed or removed (by any process)."""
        return conn.execute("SELECT version FROM spend_caps_version").fetchone()[0]

    def grant_in(self, conn: Connection, lease: Reservation, need_usd: float, need_tokens: int,
                 want_usd: float, want_tokens: int, share: float) -> tuple[float, int]:
        """Add to ``lease``'s row (inserted first when ``lease.day`` is empty) at least ``need``
        and up to ``want``, but no more than ``share`` of what the tightest cap has left beyond
        ``need``; ``CapExceededError`` when even ``need`` does not fit. Returns what was added."""
        now = _Now.at(_now())
        probe = Reservation(lease.id, lease.key_id, lease.owner_id, lease.agent_id, float(need_usd), int(need_tokens))
        room_usd, room_tokens = self._room(conn, probe, now)
        usd = need_usd + max(0.0, min(want_usd - need_usd, room_usd * share))
        tokens = need_tokens + max(0, int(min(want_tokens - need_tokens, room_tokens * share)))
        if not lease.day:
            lease.day, lease.max_cost_usd, lease.max_tokens = now.day, usd, tokens
            self._insert(conn, lease, now, ledger_from=self.leases.ledger_mark(conn))
        else:
            conn.execute("UPDATE spend_reservations SET usd = usd + ?, tokens = tokens + ? WHERE id = ?",
                         (usd, tokens, lease.id))
        return usd, tokens

    def settle_drawn_in(self, conn: Connection, lease: Reservation, cost_usd: float, tokens: int, *,
                        may_be_closed: bool, hold: tuple[float, int] | None) -> None:
        """Settle a call drawn from the lease row ``lease``. Its ledger row (same transaction)
        names the row, so the spend is folded into the totals when the lease closes; only when
        the row may already be closed (``may_be_closed``) is that checked, and a closed row's
        call is added to the totals at once. ``hold``: raise the row's hold to at least this
        ``(usd, tokens)`` (a call that cost more than its worst case)."""
        if cost_usd < 0 or tokens < 0:
            raise InvalidRequestError("actual spend cannot be negative")
        if may_be_closed and not self.leases.is_open(conn, lease.id):
            self._add_totals(conn, _who(lease), lease.day, float(cost_usd), int(tokens))
            return
        if hold is not None:
            conn.execute("UPDATE spend_reservations SET usd = MAX(usd, ?), tokens = MAX(tokens, ?) "
                         "WHERE id = ? AND status = 'open'", (float(hold[0]), int(hold[1]), lease.id))

    def close_lease_in(self, conn: Connection, lease: Reservation) -> None:
        """End a lease: its row stops holding budget, and what was settled through it (its
        ledger rows) joins the running totals and stays on the row as settled."""
        self.leases.close_in(conn, lease.id, _stamp(_now()))

    def _insert(self, conn: Connection, reservation: Reservation, now: _Now, *, ledger_from: int | None = None) -> None:
        conn.execute(
            "INSERT INTO spend_reservations (id, key_id, owner_id, agent_id, day, status, usd, tokens, "
            "expires_at, created_at, ledger_from) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?)",
            (reservation.id, reservation.key_id, reservation.owner_id, reservation.agent_id,
             reservation.day or now.day, reservation.max_cost_usd, reservation.max_tokens,
             _stamp(now.moment + timedelta(seconds=self.reservation_ttl_s)), now.stamp, ledger_from),
        )

    def _check(self, conn: Connection, cap: Cap, now: _Now, res: Reservation) -> tuple[float, float]:
        """Raise ``CapExceededError`` if ``res`` does not fit under ``cap``; else what ``cap``
        has left after it, ``(usd, tokens)``."""
        spent, reserved, spent_tokens, reserved_tokens = self._usage(conn, cap, now)
        error = None
        if cap.max_usd is not None and spent + reserved + res.max_cost_usd > cap.max_usd + _EPS:
            error = CapExceededError(cap, unit="usd", limit=cap.max_usd, spent=spent, reserved=reserved,
                                     requested=res.max_cost_usd)
        elif cap.max_tokens is not None and spent_tokens + reserved_tokens + res.max_tokens > cap.max_tokens:
            error = CapExceededError(cap, unit="tokens", limit=cap.max_tokens, spent=spent_tokens,
                                     reserved=reserved_tokens, requested=res.max_tokens)
        if error is not None:
            error.subjects = {"key_id": res.key_id, "owner_id": res.owner_id, "agent_id": res.agent_id}
            raise error
        return (math.inf if cap.max_usd is None else cap.max_usd - spent - reserved - res.max_cost_usd,
                math.inf if cap.max_tokens is None else cap.max_tokens - spent_tokens - reserved_tokens - res.max_tokens)

    def settle(self, reservation: Reservation, cost_usd: float, tokens: int) -> None:
        """Replace the reserved worst case by the actual spend (which may exceed it: it is real)."""
        with self.db.transaction() as conn:
            self.settle_in(conn, reservation, cost_usd, tokens)

    def settle_in(self, conn: Connection, reservation: Reservation, cost_usd: float, tokens: int, *,
                  audit: bool = True) -> None:
        """``settle`` inside the caller's transaction; ``audit=False`` when the caller's own audit
        entry (e.g. the model call it pays for) already records the spend."""
        if cost_usd < 0 or tokens < 0:
            raise InvalidRequestError("actual spend cannot be negative")
        cursor = conn.execute(
            "UPDATE spend_reservations SET status = 'settled', usd = ?, tokens = ?, settled_at = ? "
            "WHERE id = ? AND status = 'open'",
            (float(cost_usd), int(tokens), _stamp(_now()), reservation.id),
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"reservation '{reservation.id}' is not open")
        day = reservation.day or conn.execute("SELECT day FROM spend_reservations WHERE id = ?",
                                              (reservation.id,)).fetchone()[0]
        self._add_totals(conn, _who(reservation), day, float(cost_usd), int(tokens))
        if audit and self.audit is not None:
            self.audit.append_in(conn, "spend.settled", None, {
                "reservation": reservation.id, "key_id": reservation.key_id, "owner_id": reservation.owner_id,
                "agent_id": reservation.agent_id, "cost_usd": float(cost_usd), "tokens": int(tokens),
                "reserved_usd": reservation.max_cost_usd, "reserved_tokens": reservation.max_tokens})
        reservation.done = True

    def release(self, reservation: Reservation) -> None:
        """Drop an open reservation (the call never ran); a no-op once settled or released."""
        self.db.execute("UPDATE spend_reservations SET status = 'released', usd = 0, tokens = 0, settled_at = ? "
                        "WHERE id = ? AND status = 'open'", (_stamp(_now()), reservation.id))
        reservation.done = True

    @contextmanager
    def hold(self, *, key_id: str | None, owner_id: str | None, agent_id: str | None,
             max_cost_usd: float, max_tokens: int, actor: str | None = None) -> Iterator[Reservation]:
        """Reserve for the block; released if the block fails or forgets to settle."""
        reservation = self.reserve(key_id, owner_id, agent_id, max_cost_usd, max_tokens, actor=actor)
        try:
            yield reservation
        finally:
            if not reservation.done:
                self.release(reservation)

    def refused(self, error: CapExceededError, actor: str | None) -> None:
        """Audit a refusal, after its transaction rolled back."""
        if self.audit is not None:
            self.audit.append("spend.refused", actor, {**error.subjects, **error.to_dict()})

    # --- reporting -----------------------------------------------------------------------

    def status(self, *, key_id: str | None = None, owner_id: str | None = None,
               agent_id: str | None = None) -> SpendStatus:
        """Own spend (today and total) of the most specific subject given, and every cap that
        applies to that caller with what remains of it."""
        now = _Now.at(_now())
        with self.db.transaction() as conn:  # one consistent snapshot
            self.leases.sweep_in(conn, now.stamp)
            caps = [CapStatus(cap, *self._reported(conn, cap, now))
                    for cap in self._applicable(conn, key_id, owner_id, agent_id)]
            own = next(((scope, subject) for scope, subject in
                        (("agent", agent_id), ("key", key_id), ("owner", owner_id)) if subject), None)
            totals = []
            for period in ("day", "total"):
                probe = Cap(own[0], own[1], period) if own else Cap("global", GLOBAL, period)
                spent, reserved, tokens, reserved_tokens = self._reported(conn, probe, now)
                totals += [spent, tokens]
        return SpendStatus(today_usd=totals[0], today_tokens=int(totals[1]), total_usd=totals[2],
                           total_tokens=int(totals[3]), caps=caps)

    def cap_statuses(self) -> list[CapStatus]:
        """Every cap (configured ones and the keys' own ``max_spend_usd``) with what is spent and
        reserved against it now: what the metrics' remaining-budget gauges show."""
        now = _Now.at(_now())
        with self.db.transaction() as conn:  # one consistent snapshot
            self.leases.sweep_in(conn, now.stamp)
            caps = [Cap(r["scope"], r["subject"], r["period"], r["max_usd"], r["max_tokens"])
                    for r in conn.execute("SELECT * FROM spend_caps ORDER BY scope, subject, period")]
            if self._keys_table(conn):
                for row in conn.execute("SELECT id, scopes FROM api_keys WHERE revoked_at IS NULL"):
                    limit = json.loads(row["scopes"]).get("max_spend_usd")
                    if limit is not None:
                        caps.append(Cap("key", row["id"], "total", float(limit), None))
            return [CapStatus(cap, *self._reported(conn, cap, now)) for cap in caps]

    def spent_today(self, scope: Scope = "owner") -> dict[str, tuple[float, int]]:
        """Settled spend today (UTC) by subject of ``scope``, ``subject → (usd, tokens)``; for
        ``global`` the one subject is ``'*'``. Spend settled through open leases counts."""
        now = _Now.at(_now())
        with self.db.transaction() as conn:
            self.leases.sweep_in(conn, now.stamp)
            spent = {row["subject"]: (float(row["usd"]), int(row["tokens"])) for row in conn.execute(
                "SELECT subject, usd, tokens FROM spend_totals WHERE scope = ? AND day = ?", (scope, now.day))}
            for subject, (usd, tokens) in self.leases.open_spend_in(conn, scope, None, now.day, now.stamp).items():
                before = spent.get(subject, (0.0, 0))
                spent[subject] = (before[0] + usd, before[1] + tokens)
        return spent

    def _reported(self, conn: Connection, cap: Cap, now: _Now) -> tuple[float, float, int, int]:
        """``_usage`` as reports show it: spend settled through open leases counts as spent,
        not as reserved by the lease that holds it (``spend_fold``)."""
        spent, reserved, spent_tokens, reserved_tokens = self._usage(conn, cap, now)
        usd, tokens = self.leases.open_spend_in(conn, cap.scope, cap.subject, now.day if cap.period == "day" else None,
                                                now.stamp).get(cap.subject, (0.0, 0))
        return spent + usd, max(0.0, reserved - usd), spent_tokens + tokens, max(0, reserved_tokens - tokens)


def _who(reservation: Reservation) -> tuple[str | None, str | None, str | None]:
    return reservation.key_id, reservation.owner_id, reservation.agent_id


def _has_table(conn: Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None
