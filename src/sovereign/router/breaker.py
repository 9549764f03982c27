"""Circuit breakers: one per model, so no single backend is a single point of failure.

``failures_to_open`` consecutive failures (errors, timeouts, overload) open a model's breaker:
the router skips it for ``cooldown_s``. After the cooldown the breaker is half-open: one trial
is let through — a cheap health probe when the router has a prober (``probe.py``: it runs
before any request would be the trial, and on a timer in the server), else the next real call.
The trial's success closes the breaker, its failure opens it for another cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Breakers"]


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    trial: bool = False
    last_error: str = ""


@dataclass
class Breakers:
    failures_to_open: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _states: dict[str, _State] = field(default_factory=dict)

    def available(self, model: str) -> bool:
        """Whether ``model`` may be tried now (closed, or half-open for one trial)."""
        state = self._states.get(model)
        if state is None or state.failures < self.failures_to_open:
            return True
        if self.clock() < state.open_until or state.trial:
            return False
        state.trial = True  # half-open: this caller is the trial
        return True

    def due(self, models: list[str] | None = None) -> list[str]:
        """The models (of ``models``; default every one known) whose breaker is open, past its
        cooldown and with no trial under way: the ones a health probe should try now."""
        now = self.clock()
        names = self._states if models is None else [m for m in models if m in self._states]
        return [name for name in names if (s := self._states[name]).failures >= self.failures_to_open
                and now >= s.open_until and not s.trial]

    def untried(self, model: str) -> None:
        """The trial did not happen (refused before it reached the backend): half-open again."""
        if model in self._states:
            self._states[model].trial = False

    def succeeded(self, model: str) -> None:
        self._states.pop(model, None)

    def failed(self, model: str, error: str) -> None:
        state = self._states.setdefault(model, _State())
        state.failures += 1
        state.last_error = error
        state.trial = False
        if state.failures >= self.failures_to_open:
            state.open_until = self.clock() + self.cooldown_s

    def status(self) -> dict[str, dict]:
        """Per model with failures: ``{failures, open, retry_in_s, last_error}``."""
        now = self.clock()
        return {name: {"failures": s.failures, "open": s.failures >= self.failures_to_open and now < s.open_until,
                       "retry_in_s": max(0.0, s.open_until - now), "last_error": s.last_error}
                for name, s in self._states.items()}
