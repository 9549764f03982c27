"""A small inline SVG bar chart (no script, no external library): geometry computed here,
drawn by the template."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Bar", "Chart", "bar_chart", "daily_points"]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: float


def bar_chart(points: list[tuple[str, float]], *, width: int = 640, height: int = 140,
              gap: float = 4.0) -> Chart:
    """One bar per ``(label, value)``, scaled so the highest fills the height (labels below)."""
    plot = height - 20  # room for the labels
    peak = max((value for _, value in points), default=0.0)
    step = width / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        h = (value / peak) * plot if peak > 0 else 0.0
        bars.append(Bar(x=round(i * step + gap / 2, 2), y=round(plot - h, 2), width=round(max(step - gap, 1), 2),
                        height=round(h, 2), label=label, value=value))
    return Chart(width=width, height=height, bars=bars, peak=peak)


def daily_points(rows: list[dict], days: int, *, today: datetime | None = None) -> list[tuple[str, float]]:
    """``(day, cost)`` for each of the last ``days`` days (at most 31 shown), days without spend
    at zero; ``rows`` are ``/v1/costs`` rows grouped by day (``key`` is the day)."""
    by_day = {row["key"]: float(row["cost_usd"]) for row in rows}
    last = (today or datetime.now(UTC)).date()
    shown = min(days, 31)
    return [(day, by_day.get(day, 0.0)) for day in
            ((last - timedelta(days=back)).isoformat() for back in range(shown - 1, -1, -1))]
