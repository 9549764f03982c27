"""The usage ledger: one row per model call with tokens, latency and cost.

Billed models are priced from their price sheet (``cost_kind = 'price'``); local models by the
energy and hardware estimate of ``finops/energy.py`` (``cost_kind = 'energy'``, with the joules,
compute seconds and where the energy figure came from). Each row names who it is for (identity,
owner, agent, key) and the run it belongs to, so ``finops/reports.py`` can group by any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sovereign.finops.energy import LocalCharge
from sovereign.kernel.messages import Timings, Usage
from sovereign.kernel.registry import PriceSheet
from sovereign.store import Database

MIGRATIONS = [
    """
    CREATE TABLE usage_ledger (
        id                INTEGER PRIMARY KEY,
        ts                TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        request_id        TEXT,
        model             TEXT NOT NULL,
        principal         TEXT,
        prompt_tokens     INTEGER NOT NULL,
        cached_tokens     INTEGER NOT NULL,
        uncached_tokens   INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        reasoning_tokens  INTEGER NOT NULL,
        latency_ms        REAL NOT NULL,
        ttft_ms           REAL NOT NULL,
        cost_usd          REAL NOT NULL
    );
    CREATE INDEX usage_ledger_ts ON usage_ledger (ts);
    CREATE INDEX usage_ledger_principal ON usage_ledger (principal, ts);
    """,
    # 1 when the server reported no usage and the counts were estimated locally.
    "ALTER TABLE usage_ledger ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;",
    # Who and what each call was for, and the local energy estimate; earlier rows keep every
    # value (their run is recovered from request ids that are run ids, their cost stays 'price').
    """
    ALTER TABLE usage_ledger ADD COLUMN owner_id TEXT;
    ALTER TABLE usage_ledger ADD COLUMN agent_id TEXT;
    ALTER TABLE usage_ledger ADD COLUMN key_id TEXT;
    ALTER TABLE usage_ledger ADD COLUMN run_id TEXT;
    ALTER TABLE usage_ledger ADD COLUMN cost_kind TEXT NOT NULL DEFAULT 'price';
    ALTER TABLE usage_ledger ADD COLUMN energy_j REAL;
    ALTER TABLE usage_ledger ADD COLUMN compute_s REAL;
    ALTER TABLE usage_ledger ADD COLUMN energy_source TEXT;
    UPDATE usage_ledger SET run_id = request_id WHERE request_id LIKE 'run\\_%' ESCAPE '\\';
    UPDATE usage_ledger SET owner_id = principal WHERE owner_id IS NULL;
    CREATE INDEX usage_ledger_run ON usage_ledger (run_id);
    """,
    # The spend reservation (or budget lease row) the call was settled through: a lease folds
    # its calls' rows into the running totals when it closes (``governance.spend_fold``). The
    # two indexes served no query (``totals`` and ``finops/reports.py`` filter on ``substr(ts)``
    # and ``owner_id``, which they cannot serve) and cost two b-tree writes per call.
    """
    ALTER TABLE usage_ledger ADD COLUMN reservation TEXT;
    DROP INDEX IF EXISTS usage_ledger_ts;
    DROP INDEX IF EXISTS usage_ledger_principal;
    """,
    # No query looks calls up by run: reports group by ``run_id`` over the rows they scan anyway
    # and join the ledger to ``runs`` on its primary key; the index cost a b-tree write per call
    # at a random place (run ids are random).
    "DROP INDEX IF EXISTS usage_ledger_run;",
]


@dataclass(slots=True)
class LedgerTotals:
    calls: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float


def price(usage: Usage, prices: PriceSheet) -> float:
    return prices.cost(
        cached_tokens=usage.cached_tokens,
        uncached_tokens=usage.uncached_tokens,
        output_tokens=usage.completion_tokens,
    )


class UsageLedger:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("ledger", MIGRATIONS)

    def record(self, **call) -> float:
        """Write one call in its own transaction; returns its cost in USD."""
        with self.db.transaction() as conn:
            return self.record_in(conn, **call)

    def record_in(
        self,
        conn,
        *,
        model: str,
        usage: Usage,
        timings: Timings,
        prices: PriceSheet | None = None,
        principal: str | None = None,
        request_id: str | None = None,
        cost: float | None = None,
        owner_id: str | None = None,
        agent_id: str | None = None,
        key_id: str | None = None,
        run_id: str | None = None,
        local: LocalCharge | None = None,
        reservation: str | None = None,
    ) -> float:
        """Write one call inside the caller's transaction; returns its cost in USD (``cost`` when
        the caller priced it already, else from ``prices``; ``local``: the energy estimate of a
        local call, which is then its cost). ``reservation``: the spend reservation or lease
        row it was settled through."""
        if local is not None:
            cost = local.usd
        if cost is None:
            if prices is None:
                raise ValueError("record_in needs the price sheet or the cost")
            cost = price(usage, prices)
        conn.execute(
            "INSERT INTO usage_ledger (request_id, model, principal, prompt_tokens, cached_tokens, "
            "uncached_tokens, completion_tokens, reasoning_tokens, latency_ms, ttft_ms, cost_usd, estimated, "
            "owner_id, agent_id, key_id, run_id, cost_kind, energy_j, compute_s, energy_source, reservation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request_id, model, principal, usage.prompt_tokens, usage.cached_tokens,
                usage.uncached_tokens, usage.completion_tokens, usage.reasoning_tokens,
                timings.latency_ms, timings.ttft_ms, cost, int(usage.estimated),
                owner_id or principal, agent_id, key_id, run_id,
                "energy" if local is not None else "price",
                local.energy_j if local is not None else None, local.compute_s if local is not None else None,
                local.source if local is not None else None, reservation,
            ),
        )
        return cost

    def totals(self, *, principal: str | None = None, since: str | None = None) -> LedgerTotals:
        clauses, params = [], []
        if principal is not None:
            clauses.append("principal = ?")
            params.append(principal)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        row = self.db.query_one(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(cached_tokens),0), "
            "COALESCE(SUM(completion_tokens),0), COALESCE(SUM(reasoning_tokens),0), "
            f"COALESCE(SUM(cost_usd),0) FROM usage_ledger {where}",
            params,
        )
        return LedgerTotals(*row)

    def recent(self, limit: int = 20) -> list[dict]:
        rows = self.db.query("SELECT * FROM usage_ledger ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]
