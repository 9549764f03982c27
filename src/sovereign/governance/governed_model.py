"""``GovernedModel``: any ``Model`` wrapped in the governed path.

Each call, streamed or not: authorise (role and the key's model scope) → reserve the worst case
against every applicable cap → the inner model's call → settle with the real usage → ledger row,
settled reservation and ``model.call`` audit entry (one write) → observers (metrics, tracing).
A call that fails, or a stream abandoned before its end, releases its reservation.

It implements ``Model`` itself, so wrappers compose: a tracing wrapper can wrap a
``GovernedModel`` (a span around the whole governed call) or be an observer on the
``Governor`` (attributes of each settled call)::

    model = GovernedModel(backend, services.governor, CallScope(principal, request_id=rid))
    response = await model.complete(request)   # CapExceededError (429) before any token
    model.last.cost_usd                        # what that call cost

Interfaces get one from ``Services.governed_model(principal, name)``; the agent runtime wraps
the run's model with the run's principal, its own ``Journal`` (writes join its step commits)
and a ``SpendLease`` (the run's calls draw from one reservation, see ``spend_lease``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from sovereign.governance.governor import CallObserver, CallRecord, CallScope, Governor
from sovereign.governance.journal import DirectJournal, Journal
from sovereign.governance.spend_lease import SpendLease
from sovereign.kernel.messages import ChatRequest, ChatResponse, StreamEvent, Timings, Usage
from sovereign.kernel.protocol import Model

__all__ = ["GovernedModel"]


class GovernedModel:
    """A ``Model`` whose every call takes the governed path (see the module docstring).

    ``journal``: where the reservation and the settlement are written (default: each in its own
    transaction). ``lease``: a ``SpendLease`` the calls draw their reservations from (a run's;
    default: each call reserved on its own). ``observers``: called with each settled call, after
    the governor's own.
    ``last``: the last settled call of this wrapper (one wrapper per request or run execution).
    """

    def __init__(self, inner: Model, governor: Governor, scope: CallScope, *, journal: Journal | None = None,
                 lease: SpendLease | None = None, observers: list[CallObserver] | None = None) -> None:
        self.inner = inner
        self.governor = governor
        self.scope = scope
        self.journal = journal or DirectJournal(governor.spend.db)
        self.lease = lease
        self.observers = list(observers or [])
        self.last: CallRecord | None = None
        self._authorized: set[str] = set()
        """Models this wrapper's principal was authorised for: the answer depends only on the
        principal (a snapshot taken when the request or run began) and the name, so each name
        is decided once."""

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, attribute: str) -> Any:  # ready, options, count_tokens, bounds_output, ...
        if attribute == "inner":
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def _prepare(self, request: ChatRequest) -> ChatRequest:
        if request.model not in self._authorized:
            self.governor.authorize(self.scope, request.model)
            self._authorized.add(request.model)
        if request.max_tokens is None and not getattr(self.inner, "bounds_output", False):
            request = replace(request, max_tokens=self.governor.default_max_tokens)  # the worst case holds
        return request

    async def complete(self, request: ChatRequest) -> ChatResponse:
        request = self._prepare(request)
        reservation = self.governor.reserve(self.scope, request, self.journal, self.lease)
        try:
            response = await self.inner.complete(request)
        except BaseException:
            self.governor.release(reservation)
            raise
        self._settled(self.governor.settle(self.scope, reservation, request.model, response.usage,
                                           response.timings, self.journal))
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """The inner stream, reserved before its first event and settled after its last; the
        reservation is released if the stream fails or is closed early."""
        request = self._prepare(request)
        reservation = self.governor.reserve(self.scope, request, self.journal, self.lease)
        usage, timings, settled = Usage(), Timings(), False
        held: StreamEvent | None = None  # the closing event, sent once the call is settled
        events = self.inner.stream(request)
        try:
            async for event in events:
                if event.usage:
                    usage = event.usage
                if event.timings:
                    timings = event.timings
                if held is not None:
                    yield held
                    held = None
                if event.finish_reason is not None or event.usage is not None:
                    held = event
                else:
                    yield event
            self._settled(self.governor.settle(self.scope, reservation, request.model, usage, timings,
                                               self.journal))
            settled = True
            if held is not None:
                yield held
        finally:
            if not settled:
                self.governor.release(reservation)
            await _aclose(events)

    def _settled(self, record: CallRecord) -> None:
        self.last = record
        for observer in self.observers:
            observer(record)


async def _aclose(events: Any) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
