"""Cost reports on the usage ledger: spend and tokens grouped by day, owner, agent, model, run or
cost kind; cost per completed task; the same usage re-priced on any catalogue model; measured
local throughput (what the break-even calculator uses).

Tokens are split the way providers bill them: cached input, uncached input, output (the answer)
and reasoning (``completion = output + reasoning``; both are billed at the output price).
A ``CostFilter`` scopes every query (an owner, an agent, a date range), so a caller who may see
only their own spend gets only their rows (``server/routes_costs.py`` sets it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from sovereign.errors import InvalidRequestError
from sovereign.kernel.registry import PriceSheet
from sovereign.store import Database

__all__ = ["CostFilter", "CostReport", "CostRow", "DIMENSIONS", "Repriced", "TaskCost", "Throughput"]

Dimension = Literal["day", "owner", "agent", "model", "run", "kind"]
DIMENSIONS: tuple[str, ...] = ("day", "owner", "agent", "model", "run", "kind")


@dataclass(frozen=True, slots=True)
class CostFilter:
    """Which ledger rows a report covers; ``since``/``until`` are UTC days (``YYYY-MM-DD``), inclusive."""

    owner_id: str | None = None
    agent_id: str | None = None
    """The agent identity the calls counted against (an agent key sees only its own)."""
    agent: str | None = None
    model: str | None = None
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True, slots=True)
class CostRow:
    key: str
    calls: int
    cached_tokens: int
    uncached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float
    energy_cost_usd: float
    """The part of ``cost_usd`` that is a local energy/hardware estimate, not a billed price."""
    energy_j: float
    compute_s: float

    @property
    def total_tokens(self) -> int:
        return self.cached_tokens + self.uncached_tokens + self.output_tokens + self.reasoning_tokens

    def to_dict(self) -> dict:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass(frozen=True, slots=True)
class TaskCost:
    runs: int
    completed: int
    cost_usd: float
    """Every call of every run in the window (failed runs' calls included: they were paid for)."""

    @property
    def per_completed_usd(self) -> float | None:
        return self.cost_usd / self.completed if self.completed else None

    def to_dict(self) -> dict:
        return {**asdict(self), "per_completed_usd": self.per_completed_usd}


@dataclass(frozen=True, slots=True)
class Repriced:
    model: str
    cost_usd: float
    cached_price_published: bool


@dataclass(frozen=True, slots=True)
class Throughput:
    """Measured generation speed of local calls: output tokens over compute time."""

    calls: int
    output_tokens: int
    compute_s: float

    @property
    def tokens_per_s(self) -> float | None:
        return self.output_tokens / self.compute_s if self.compute_s > 0 and self.output_tokens else None


_LOCAL_SECONDS = "COALESCE(l.compute_s, l.latency_ms / 1000.0)"
_SUMS = (
    "COUNT(*), COALESCE(SUM(l.cached_tokens), 0), COALESCE(SUM(l.uncached_tokens), 0), "
    "COALESCE(SUM(l.completion_tokens - l.reasoning_tokens), 0), COALESCE(SUM(l.reasoning_tokens), 0), "
    "COALESCE(SUM(l.cost_usd), 0), COALESCE(SUM(CASE WHEN l.cost_kind = 'energy' THEN l.cost_usd END), 0), "
    "COALESCE(SUM(l.energy_j), 0), COALESCE(SUM(l.compute_s), 0)"
)


class CostReport:
    """Reports over the ledger in ``db`` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._runs = db.query_one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'") is not None

    def _agent_expr(self) -> str:
        return "COALESCE(r.agent, l.agent_id)" if self._runs else "l.agent_id"

    def _from(self) -> str:
        return "usage_ledger l" + (" LEFT JOIN runs r ON r.id = l.run_id" if self._runs else "")

    def _where(self, scope: CostFilter) -> tuple[str, list]:
        clauses, params = [], []
        for value, clause in ((scope.owner_id, "l.owner_id = ?"), (scope.agent_id, "l.agent_id = ?"),
                              (scope.model, "l.model = ?"),
                              (scope.agent, f"{self._agent_expr()} = ?"),
                              (scope.since, "substr(l.ts, 1, 10) >= ?"), (scope.until, "substr(l.ts, 1, 10) <= ?")):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def by(self, dimension: str, scope: CostFilter = CostFilter()) -> list[CostRow]:
        """One row per value of ``dimension``, most expensive first (days in order)."""
        column = {"day": "substr(l.ts, 1, 10)", "owner": "l.owner_id", "agent": self._agent_expr(),
                  "model": "l.model", "run": "l.run_id", "kind": "l.cost_kind"}.get(dimension)
        if column is None:
            raise InvalidRequestError(f"cannot group costs by '{dimension}'; use one of {', '.join(DIMENSIONS)}",
                                      param="by")
        where, params = self._where(scope)
        order = "key" if dimension == "day" else "7 DESC, key"
        rows = self.db.query(f"SELECT COALESCE({column}, '(none)') AS key, {_SUMS} FROM {self._from()} {where} "
                             f"GROUP BY key ORDER BY {order}", params)
        return [_row(row) for row in rows]

    def totals(self, scope: CostFilter = CostFilter()) -> CostRow:
        where, params = self._where(scope)
        return _row(self.db.query_one(f"SELECT 'total', {_SUMS} FROM {self._from()} {where}", params))

    def per_task(self, scope: CostFilter = CostFilter()) -> TaskCost:
        """Runs in the window, how many completed, and what all their calls cost."""
        if not self._runs:
            return TaskCost(0, 0, 0.0)
        where, params = self._where(scope)
        where = (where + " AND" if where else "WHERE") + " l.run_id IS NOT NULL"
        row = self.db.query_one(
            f"SELECT COUNT(DISTINCT l.run_id), COUNT(DISTINCT CASE WHEN r.status = 'completed' THEN l.run_id END), "
            f"COALESCE(SUM(l.cost_usd), 0) FROM {self._from()} {where}", params)
        return TaskCost(int(row[0]), int(row[1]), float(row[2]))

    def reprice(self, prices: dict[str, PriceSheet], scope: CostFilter = CostFilter()) -> list[Repriced]:
        """What the usage in ``scope`` would have cost on each model of ``prices``, cheapest first
        (every call's tokens at that model's price; reasoning billed as output)."""
        total = self.totals(scope)
        out = total.output_tokens + total.reasoning_tokens
        priced = [Repriced(name, sheet.cost(cached_tokens=total.cached_tokens, uncached_tokens=total.uncached_tokens,
                                            output_tokens=out), sheet.cached_price_published)
                  for name, sheet in prices.items()]
        return sorted(priced, key=lambda r: (r.cost_usd, r.model))

    def local_throughput(self, scope: CostFilter = CostFilter()) -> Throughput:
        """Output tokens per second of compute over the local (energy-priced) calls in ``scope``."""
        where, params = self._where(scope)
        where = (where + " AND" if where else "WHERE") + " l.cost_kind = 'energy' AND l.completion_tokens > 0"
        row = self.db.query_one(f"SELECT COUNT(*), COALESCE(SUM(l.completion_tokens), 0), "
                                f"COALESCE(SUM({_LOCAL_SECONDS}), 0) FROM {self._from()} {where}", params)
        return Throughput(int(row[0]), int(row[1]), float(row[2]))


def _row(row) -> CostRow:
    return CostRow(str(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), float(row[6]),
                   float(row[7]), float(row[8]), float(row[9]))
