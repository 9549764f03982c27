"""Workload and break-even calculators (pure arithmetic on price sheets and hardware figures).

``estimate``: a workload of ``calls`` calls, each with so many cached and uncached input tokens
and output tokens, priced on a model — 1,000,000 x (2,000 cached + 200 uncached, 300 output) on
DeepSeek V4-Flash ($0.0028 / $0.14 / $0.28 per million) is $117.60.

``breakeven``: when does a machine of your own beat a hosted price? Per day, a machine costs its
amortised price (plus idle power around the clock) whatever it does, and energy per token it
generates; the hosted model costs its blended price per token. Break-even is the daily volume
where the two meet; the machine can only get there if that volume fits in what it can generate
in a day at the given utilisation and measured throughput.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sovereign.errors import InvalidRequestError
from sovereign.finops.energy import SECONDS_A_YEAR
from sovereign.kernel.registry import PriceSheet

__all__ = ["BreakEven", "Hardware", "Workload", "WorkloadCost", "blended_price", "breakeven", "estimate"]

_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Workload:
    """``calls`` calls, each with these token counts."""

    calls: float
    cached: float = 0
    uncached: float = 0
    output: float = 0

    def __post_init__(self) -> None:
        for name in ("calls", "cached", "uncached", "output"):
            if getattr(self, name) < 0:
                raise InvalidRequestError(f"{name} must be zero or more", param=name)

    @property
    def tokens_per_call(self) -> float:
        return self.cached + self.uncached + self.output


@dataclass(frozen=True, slots=True)
class WorkloadCost:
    model: str
    cached_usd: float
    uncached_usd: float
    output_usd: float
    cached_price_published: bool

    @property
    def total_usd(self) -> float:
        return self.cached_usd + self.uncached_usd + self.output_usd

    def to_dict(self) -> dict:
        return {**asdict(self), "total_usd": self.total_usd}


def estimate(workload: Workload, model: str, prices: PriceSheet) -> WorkloadCost:
    """The workload priced on ``model`` (where the provider publishes no cached price, the sheet
    bills cached input at the uncached rate, and ``cached_price_published`` says so)."""
    calls = workload.calls
    return WorkloadCost(model, calls * workload.cached * prices.cached_input / 1e6,
                        calls * workload.uncached * prices.input / 1e6, calls * workload.output * prices.output / 1e6,
                        prices.cached_price_published)


def blended_price(prices: PriceSheet, workload: Workload) -> float:
    """USD per million tokens of the workload's mix on ``prices``."""
    if workload.tokens_per_call <= 0:
        raise InvalidRequestError("the workload mix has no tokens", param="output")
    per_call = estimate(Workload(1, workload.cached, workload.uncached, workload.output), "", prices).total_usd
    return per_call / workload.tokens_per_call * 1e6


@dataclass(frozen=True, slots=True)
class Hardware:
    price_usd: float
    power_watts: float
    electricity_usd_per_kwh: float
    amortisation_years: float
    utilisation: float
    tokens_per_s: float
    """Tokens the machine processes per second of compute (measured, see ``CostReport.local_throughput``)."""
    idle_watts: float = 0.0

    def __post_init__(self) -> None:
        if self.amortisation_years <= 0:
            raise InvalidRequestError("amortisation must be more than zero years", param="amortisation_years")
        if not 0 < self.utilisation <= 1:
            raise InvalidRequestError("utilisation must be in (0, 1]", param="utilisation")
        if self.tokens_per_s <= 0:
            raise InvalidRequestError("throughput must be more than zero tokens/s (measure it: run a local "
                                      "model, or give --tokens-per-s)", param="tokens_per_s")
        if min(self.price_usd, self.power_watts, self.electricity_usd_per_kwh, self.idle_watts) < 0:
            raise InvalidRequestError("hardware price, power and electricity price must be zero or more",
                                      param="price_usd")


@dataclass(frozen=True, slots=True)
class BreakEven:
    hosted_usd_per_mtok: float
    fixed_usd_per_day: float
    """Amortised hardware plus idle power, paid every day."""
    energy_usd_per_mtok: float
    capacity_tokens_per_day: float
    breakeven_tokens_per_day: float | None
    """None when energy alone costs more per token than the hosted price: never breaks even."""
    local_usd_per_mtok_at_capacity: float

    @property
    def reachable(self) -> bool:
        return self.breakeven_tokens_per_day is not None and self.breakeven_tokens_per_day <= self.capacity_tokens_per_day

    def to_dict(self) -> dict:
        return {**asdict(self), "reachable": self.reachable}


def breakeven(hardware: Hardware, hosted_usd_per_mtok: float) -> BreakEven:
    """Compare owning ``hardware`` with paying ``hosted_usd_per_mtok`` (see the module docstring)."""
    if hosted_usd_per_mtok < 0:
        raise InvalidRequestError("the hosted price must be zero or more", param="hosted_usd_per_mtok")
    fixed = (hardware.price_usd / (hardware.amortisation_years * SECONDS_A_YEAR / _DAY_S)
             + hardware.idle_watts * 24 / 1000 * hardware.electricity_usd_per_kwh)
    joules_per_token = hardware.power_watts / hardware.tokens_per_s
    energy_per_mtok = joules_per_token * 1e6 / 3.6e6 * hardware.electricity_usd_per_kwh
    capacity = hardware.tokens_per_s * _DAY_S * hardware.utilisation
    margin = hosted_usd_per_mtok - energy_per_mtok
    volume = fixed / margin * 1e6 if margin > 0 else None
    at_capacity = (fixed / capacity * 1e6 + energy_per_mtok) if capacity > 0 else float("inf")
    return BreakEven(hosted_usd_per_mtok, fixed, energy_per_mtok, capacity, volume, at_capacity)
