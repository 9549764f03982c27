"""Per-call fail-over inside agent runs with ``model = "auto"``: the run's model is a
``FailoverModel`` over the router's plan for the task. Each call goes to the run's routed model
first; an error, a timeout or an overload (``FAILOVER_ERRORS``) marks that model's breaker, is
audited (``router.failover``, with the run id) and the same call goes to the next allowed model
of the plan — so one backend dying mid-run costs one retried call, not the run. A cap, a
permission or a bad request is the run's answer and is never routed around. Every model behind
it is governed with the run's own scope, journal and lease (``govern``), so each call is
authorised, reserved and priced as the model that served it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sovereign.errors import ModelUnavailableError
from sovereign.governance.keys import Principal
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, StreamEvent, ToolSpec
from sovereign.kernel.protocol import Model

if TYPE_CHECKING:
    from sovereign.router.router import RouteDecision, Router

__all__ = ["FailoverModel", "route_run"]


def route_run(router: Router, agent_name: str, task: str, tool_names: list[str], principal: Principal,
              run_id: str | None = None) -> RouteDecision:
    """The router's decision for an agent run (the task and whether tools are offered weigh in),
    audited as ``router.decision`` with the agent's name; a refusal is raised."""
    tools = [ToolSpec(name=name) for name in tool_names]
    request = ChatRequest(model="auto", messages=[Message(role="user", content=task)], tools=tools)
    decision = router.decide(request, principal, None)
    router.services.audit.append("router.decision", principal.identity_name, {
        "owner": principal.spend_owner_id, "agent": agent_name, "run_id": run_id, "cost_usd": 0.0,
        **decision.to_dict()})
    return decision


class FailoverModel:
    """The run's model under ``auto`` (see the module docstring). ``first`` is the governed
    routed model; ``others`` the rest of the plan, resolved and governed on first use by
    ``resolve``. ``last`` is the settled call of whichever model answered last."""

    def __init__(self, router: Router, first: Model, others: list[str],
                 resolve: Callable[[str], Awaitable[Model]], *, principal: Principal | None, run_id: str) -> None:
        self.router = router
        self.first = first
        self.names = [first.name, *[n for n in others if n != first.name]]
        self._models: dict[str, Model] = {first.name: first}
        self._resolve = resolve
        self.principal = principal
        self.run_id = run_id
        self._current: Model = first

    @property
    def name(self) -> str:
        return self.first.name

    @property
    def last(self) -> Any:
        return getattr(self._current, "last", None)

    def __getattr__(self, attribute: str) -> Any:  # journal, scope, count_tokens, options, ready, ...
        if attribute in ("first", "_current"):
            raise AttributeError(attribute)
        return getattr(self.first, attribute)

    async def _model(self, name: str) -> Model | None:
        if name not in self._models:
            try:
                self._models[name] = await self._resolve(name)
            except self._errors() as exc:
                self._failed(name, exc, None)
                return None
        return self._models[name]

    @staticmethod
    def _errors() -> tuple[type[BaseException], ...]:
        from sovereign.router.router import FAILOVER_ERRORS

        return FAILOVER_ERRORS

    def _ready(self) -> list[str]:
        breakers = self.router.breakers
        return [name for name in self.names if breakers.available(name)]

    def _failed(self, name: str, exc: BaseException, errors: list[str] | None) -> None:
        error = getattr(exc, "message", None) or type(exc).__name__
        self.router.breakers.failed(name, error)
        if errors is not None:
            errors.append(f"{name}: {error}")
        who = self.principal.identity_name if self.principal is not None else "system"
        self.router.services.audit.append("router.failover", who, {
            "run_id": self.run_id, "model": name, "error": error,
            "owner": self.principal.spend_owner_id if self.principal is not None else None})

    async def complete(self, request: ChatRequest) -> ChatResponse:
        errors: list[str] = []
        if self.router.settings.probe:
            await self.router.prober.probe_due(self.names)
        for name in self._ready():
            model = await self._model(name)
            if model is None:
                continue
            try:
                async with asyncio.timeout(self.router.settings.timeout_s):
                    response = await model.complete(replace(request, model=name))
            except self._errors() as exc:
                self._failed(name, exc, errors)
                continue
            self.router.breakers.succeeded(name)
            self._current = model
            return response
        raise ModelUnavailableError("every model the router allows for this run failed or is cooling down ("
                                    + ("; ".join(errors) or ", ".join(self.names)) + ")")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Fail over until a model yields its first event; after that the stream is that model's."""
        errors: list[str] = []
        for name in self._ready():
            model = await self._model(name)
            if model is None:
                continue
            events = model.stream(replace(request, model=name))
            try:
                async with asyncio.timeout(self.router.settings.timeout_s):
                    first = await anext(events)
            except StopAsyncIteration:
                return
            except self._errors() as exc:
                await events.aclose()
                self._failed(name, exc, errors)
                continue
            self.router.breakers.succeeded(name)
            self._current = model
            yield first
            async for event in events:
                yield event
            return
        raise ModelUnavailableError("every model the router allows for this run failed (" + "; ".join(errors) + ")")
