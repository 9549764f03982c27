"""Honest local cost: what a call on the embedded model cost in electricity and hardware.

A local call has no price sheet, but it is not free. Its cost is an estimate:

    energy (J)  = RAPL package energy over the call, where /sys/class/powercap exposes it
                  (package-wide: other work on the machine in that window counts too),
                  else the configured power draw (W) x the call's measured compute time (s)
    cost (USD)  = energy / 3.6e6 x electricity price (USD/kWh)
                + compute time x hardware price / (amortisation years x busy seconds a year)

"Busy seconds a year" is a year's seconds times ``utilisation``: a machine busy a quarter of the
time carries four times the wall-clock depreciation on each busy second. The figures come from
``[finops]`` in config.toml (``FinopsSettings``); the ledger flags such rows ``cost_kind =
'energy'`` so reports never mix them up with billed prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sovereign.config import FinopsSettings

__all__ = ["EnergyModel", "LocalCharge", "RaplMeter", "SECONDS_A_YEAR", "energy_model"]

SECONDS_A_YEAR = 365.25 * 86400
_J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class LocalCharge:
    """The estimated cost of one local call and what it was computed from."""

    usd: float
    energy_j: float
    compute_s: float
    source: str
    """``rapl`` (measured package energy) or ``power_figure`` (configured watts x time)."""


class RaplMeter:
    """Reads the package energy counters under ``root`` (``/sys/class/powercap``): the sum of
    every top-level ``intel-rapl:N`` zone, in joules. ``None`` where nothing is readable."""

    def __init__(self, root: Path = Path("/sys/class/powercap")) -> None:
        self.zones: list[tuple[Path, float]] = []
        for zone in sorted(root.glob("intel-rapl:*")) if root.is_dir() else []:
            if zone.name.count(":") != 1:  # sub-zones (core, uncore) are inside the package's figure
                continue
            try:
                float((zone / "energy_uj").read_text())
                wrap = float((zone / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue  # unreadable (usually root-only): fall back to the power figure
            self.zones.append((zone / "energy_uj", wrap))

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def read(self) -> list[float] | None:
        """The raw counters (microjoules), or None when a zone stopped being readable."""
        try:
            return [float(path.read_text()) for path, _ in self.zones]
        except (OSError, ValueError):
            return None

    def joules_since(self, start: list[float]) -> float | None:
        now = self.read()
        if now is None or len(now) != len(start):
            return None
        total = 0.0
        for (_, wrap), before, after in zip(self.zones, start, now):
            total += (after - before) if after >= before else (wrap - before + after)  # counter wrapped
        return total / 1e6


@dataclass
class EnergyModel:
    """Prices local compute (see the module docstring); ``meter`` is the RAPL reader (or None)."""

    power_watts: float
    electricity_usd_per_kwh: float
    hardware_usd: float
    amortisation_years: float
    utilisation: float
    meter: RaplMeter | None = None

    @property
    def hardware_usd_per_busy_second(self) -> float:
        busy = self.amortisation_years * SECONDS_A_YEAR * self.utilisation
        return self.hardware_usd / busy if busy > 0 else 0.0

    def start(self) -> list[float] | None:
        """A reading to measure one call from (None without RAPL)."""
        return self.meter.read() if self.meter is not None and self.meter.available else None

    def charge(self, compute_s: float, start: list[float] | None = None) -> LocalCharge:
        """The cost of ``compute_s`` seconds of local compute; measured energy when ``start``
        came from RAPL and the counters still read, else the power figure."""
        compute_s = max(0.0, compute_s)
        joules = self.meter.joules_since(start) if start is not None and self.meter is not None else None
        source = "rapl"
        if joules is None:
            joules, source = self.power_watts * compute_s, "power_figure"
        usd = joules / _J_PER_KWH * self.electricity_usd_per_kwh + compute_s * self.hardware_usd_per_busy_second
        return LocalCharge(usd=usd, energy_j=joules, compute_s=compute_s, source=source)


def energy_model(settings: FinopsSettings) -> EnergyModel | None:
    """The ``EnergyModel`` of ``[finops]`` (None when ``local_cost`` is off: local calls cost $0)."""
    if not settings.local_cost:
        return None
    meter = RaplMeter(settings.powercap_dir) if settings.rapl else None
    return EnergyModel(power_watts=settings.power_watts, electricity_usd_per_kwh=settings.electricity_usd_per_kwh,
                       hardware_usd=settings.hardware_usd, amortisation_years=settings.amortisation_years,
                       utilisation=settings.utilisation, meter=meter)
