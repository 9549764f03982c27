"""Active health probes for the circuit breakers: a model whose breaker is open and past its
cooldown gets a cheap trial call (one token, no reasoning) instead of a user's request being
the trial. The router probes the models of a plan before trying them, and the server probes
every due model on a timer (``[router] probe_interval_s``), so a recovered backend is back in
the rotation before the next request needs it.

A probe is a governed call as the local admin (ledger and ``model.call`` audit like any other),
and its outcome is audited as ``router.probe``. A probe refused by a spend cap says nothing about
the backend's health: the breaker then stays half-open for the next real call.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from sovereign.errors import SovereignError
from sovereign.kernel.messages import ChatRequest, Message, Thinking

if TYPE_CHECKING:
    from sovereign.router.router import Router

__all__ = ["Prober", "probe_request"]


def probe_request(name: str) -> ChatRequest:
    return ChatRequest(model=name, messages=[Message(role="user", content="Reply with OK.")], max_tokens=1,
                       temperature=0.0, thinking=Thinking(False))


class Prober:
    """Probes ``router``'s due models (see the module docstring)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def probe_due(self, models: list[str] | None = None) -> dict[str, str | None]:
        """Probe each due model (of ``models``; default all); returns ``{model: error or None}``."""
        outcome: dict[str, str | None] = {}
        for name in self.router.breakers.due(models):
            if self.router.breakers.available(name):  # takes the half-open trial
                outcome[name] = await self._probe(name)
        return outcome

    async def _probe(self, name: str) -> str | None:
        from sovereign.router.router import FAILOVER_ERRORS

        services, breakers = self.router.services, self.router.breakers
        principal = services.keys.local_principal()
        started = time.perf_counter()
        error: str | None = None
        try:
            model = await services.governed_model(principal, name, request_id="probe")
            async with asyncio.timeout(self.router.settings.probe_timeout_s):
                await model.complete(probe_request(name))
        except FAILOVER_ERRORS as exc:
            error = getattr(exc, "message", None) or type(exc).__name__
            breakers.failed(name, error)
        except SovereignError as exc:  # a cap or a permission: no verdict on the backend
            breakers.untried(name)
            services.audit.append("router.probe", principal.identity_name, {
                "model": name, "ok": None, "error": exc.message})
            return exc.message
        else:
            breakers.succeeded(name)
        services.audit.append("router.probe", principal.identity_name, {
            "model": name, "ok": error is None, "error": error,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1)})
        return error

    async def run(self, interval_s: float) -> None:
        """Probe every due model each ``interval_s`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.probe_due()
