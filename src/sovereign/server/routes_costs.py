"""``/v1/costs``: the cost summary of the ledger, and the workload and break-even calculators.

Scoped like ``/v1/spend``: an admin sees every row (and may filter by owner); anyone else sees
only the rows of their own spend owner (an agent key: its owner's rows for that agent).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sovereign.errors import InvalidRequestError
from sovereign.finops.calculator import Hardware, Workload, blended_price, breakeven, estimate
from sovereign.finops.reports import CostFilter, CostReport
from sovereign.finops.summary import cost_summary, priced_models
from sovereign.governance.authz import ROLE_RANK, authorize

router = APIRouter()

_DAY = r"^\d{4}-\d{2}-\d{2}$"


@router.get("/v1/costs")
async def costs(
    request: Request,
    by: Literal["day", "owner", "agent", "model", "run", "kind"] = "model",
    since: str | None = Query(default=None, pattern=_DAY),
    until: str | None = Query(default=None, pattern=_DAY),
    owner: str | None = None,
    agent: str | None = None,
    model: str | None = None,
    reprice: str | None = Query(default=None, description="comma-separated models to re-price on"),
):
    """Spend and tokens by day, owner, agent, model or run; cost per completed task; re-priced."""
    principal = authorize(request.state.principal, action="read")
    services = request.app.state.services
    agent_id = None
    if ROLE_RANK.get(principal.role, -1) >= ROLE_RANK["admin"]:
        owner_id = services.keys.identity(owner)["id"] if owner else None
    else:
        owner_id, agent_id = principal.spend_owner_id, principal.agent_id  # only their own, whatever they ask
    scope = CostFilter(owner_id=owner_id, agent_id=agent_id, agent=agent, model=model, since=since, until=until)
    names = [n.strip() for n in reprice.split(",") if n.strip()] if reprice else None
    return cost_summary(services.db, priced_models(services.registry), scope, by, names)


_TOKENS = 1e9  # per call: beyond any context window
_MONEY = 1e12


class EstimateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    calls: float = Field(ge=0, le=1e15)
    cached: float = Field(default=0, ge=0, le=_TOKENS)
    uncached: float = Field(default=0, ge=0, le=_TOKENS)
    output: float = Field(default=0, ge=0, le=_TOKENS)
    model: str = "deepseek-v4-flash"


@router.post("/v1/costs/estimate")
async def estimate_workload(body: EstimateIn, request: Request):
    """A workload priced on ``model`` and on every priced catalogue model."""
    authorize(request.state.principal, action="read")
    registry = request.app.state.services.registry
    workload = Workload(body.calls, body.cached, body.uncached, body.output)
    chosen = estimate(workload, body.model, registry.get(body.model).prices)
    others = sorted((estimate(workload, n, s) for n, s in priced_models(registry).items()),
                    key=lambda c: (c.total_usd, c.model))
    return {"object": "cost_estimate", "estimate": chosen.to_dict(), "catalogue": [c.to_dict() for c in others]}


class BreakEvenIn(BaseModel):
    """Bounded so every figure stays finite (a 400 names the field beyond its range)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    hardware_usd: float = Field(ge=0, le=_MONEY)
    power_watts: float = Field(ge=0, le=1e9)
    electricity_usd_per_kwh: float = Field(default=0.17, ge=0, le=1e3)
    utilisation: float = Field(default=0.5, ge=0.001, le=1)
    amortisation_years: float = Field(default=3.0, ge=0.01, le=100)
    idle_watts: float = Field(default=0.0, ge=0, le=1e9)
    tokens_per_s: float | None = Field(default=None, ge=0.001, le=1e9, description="default: measured on local calls")
    model: str = "deepseek-v4-flash"
    hosted_usd_per_mtok: float | None = Field(default=None, ge=0, le=_MONEY)
    cached: float = Field(default=2000, ge=0, le=_TOKENS)
    uncached: float = Field(default=200, ge=0, le=_TOKENS)
    output: float = Field(default=300, ge=0, le=_TOKENS)


@router.post("/v1/costs/breakeven")
async def breakeven_point(body: BreakEvenIn, request: Request):
    """Owning a machine vs a hosted price, with the measured local throughput by default."""
    authorize(request.state.principal, action="read")
    services = request.app.state.services
    measured = CostReport(services.db).local_throughput()
    speed = body.tokens_per_s or measured.tokens_per_s
    if speed is None:
        raise InvalidRequestError("no local calls in the ledger to measure throughput from: give tokens_per_s",
                                  param="tokens_per_s")
    price = body.hosted_usd_per_mtok if body.hosted_usd_per_mtok is not None else blended_price(
        services.registry.get(body.model).prices, Workload(1, body.cached, body.uncached, body.output))
    result = breakeven(Hardware(body.hardware_usd, body.power_watts, body.electricity_usd_per_kwh,
                                body.amortisation_years, body.utilisation, speed, body.idle_watts), price)
    return {"object": "breakeven", **result.to_dict(), "tokens_per_s": speed,
            "tokens_per_s_source": "given" if body.tokens_per_s else f"measured over {measured.calls} local calls"}
