"""One cost summary, the same for ``sovereign costs`` and ``GET /v1/costs``: totals, a grouping,
cost per completed task, the usage re-priced on the catalogue and the escalation report."""

from __future__ import annotations

from typing import Any

from sovereign.errors import InvalidRequestError
from sovereign.finops.reports import CostFilter, CostReport
from sovereign.kernel.registry import PriceSheet
from sovereign.store import Database

__all__ = ["cost_summary", "priced_models"]


def priced_models(registry: Any) -> dict[str, PriceSheet]:
    """The catalogue language models with a price (local models, perception ones too, have none:
    their cost is energy)."""
    return {spec.name: spec.prices for spec in registry if not spec.is_local and spec.kind == "chat"}


def cost_summary(db: Database, prices: dict[str, PriceSheet], scope: CostFilter, by: str = "model",
                 reprice: list[str] | None = None) -> dict[str, Any]:
    """The summary (a JSON-ready dict) of the ledger rows in ``scope``, grouped ``by``;
    ``reprice`` limits the re-pricing to those models (default: every priced catalogue model)."""
    report = CostReport(db)
    rows = report.by(by, scope)
    if reprice:
        missing = [name for name in reprice if name not in prices]
        if missing:
            raise InvalidRequestError(f"no price sheet for {', '.join(missing)}; priced models: "
                                      f"{', '.join(sorted(prices))}", param="reprice")
        prices = {name: prices[name] for name in reprice}
    throughput = report.local_throughput(scope)
    return {
        "object": "cost_summary",
        "filter": _filter(scope),
        "totals": report.totals(scope).to_dict(),
        "by": by,
        "rows": [row.to_dict() for row in rows],
        "tasks": report.per_task(scope).to_dict(),
        "repriced": [{"model": r.model, "cost_usd": r.cost_usd, "cached_price_published": r.cached_price_published}
                     for r in report.reprice(prices, scope)],
        "local_throughput": {"calls": throughput.calls, "output_tokens": throughput.output_tokens,
                             "compute_s": throughput.compute_s, "tokens_per_s": throughput.tokens_per_s},
        "escalations": escalations(db, scope),
    }


def _filter(scope: CostFilter) -> dict[str, Any]:
    return {name: getattr(scope, name) for name in ("owner_id", "agent_id", "agent", "model", "since", "until")}


def escalations(db: Database, scope: CostFilter) -> dict[str, Any]:
    """How often routed requests escalated to a bigger model, and what that cost: the bigger
    models' calls (``extra_cost_usd``) and the answer checks' (a verifier's, ``check_cost_usd``);
    from the ``router.decision`` and ``router.escalated`` audit entries in the window, for the
    scope's owner."""
    routed = _audit_sum(db, "router.decision", scope)
    escalated, extra = _audit_sum(db, "router.escalated", scope, "$.extra_cost_usd")
    checks = _audit_sum(db, "router.decision", scope, "$.check_cost_usd")[1]
    return {"routed": routed[0], "escalated": escalated, "rate": escalated / routed[0] if routed[0] else None,
            "extra_cost_usd": extra, "check_cost_usd": checks, "spend_usd": extra + checks}


def _audit_sum(db: Database, kind: str, scope: CostFilter, field: str = "$.cost_usd") -> tuple[int, float]:
    """``(entries, sum of field)`` of audit entries of ``kind`` in the scope."""
    clauses, params = ["kind = ?"], [kind]
    for value, clause in ((scope.since, "substr(ts, 1, 10) >= ?"), (scope.until, "substr(ts, 1, 10) <= ?"),
                          (scope.owner_id, "json_extract(data, '$.owner') = ?")):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    row = db.query_one(f"SELECT COUNT(*), COALESCE(SUM(json_extract(data, ?)), 0) FROM audit_log "
                       f"WHERE {' AND '.join(clauses)}", [field, *params])
    return int(row[0]), float(row[1])
