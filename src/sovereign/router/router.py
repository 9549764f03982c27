"""``Router``: serve a ``model: "auto"`` request — policy, then difficulty, then cost, then
fallbacks — on the governed path.

``plan`` is pure and fast (no I/O): the policy's allowed models (``policy.py``), the
classifier's kind, effort and tier (``classifier.py``) — reasoning dropped where the chosen
model's measured profile says it does not pay for that kind (``reasoning_profile.py``) — and
the allowed models ordered cheapest first among those of the tier or above (the ones below it
last, as fallbacks). Where the kind was measured on several allowed models, the measured
profiles pick the model and whether it reasons instead (the quickest cell not significantly
less accurate than the best, ``[router] profile_z``; the rest stay as fallbacks). ``complete`` and
``stream`` then try the plan in order through ``Services.governed_model`` (authorise, reserve
every cap, ledger, audit): an error, a timeout or an overload (503) marks the model's breaker
(``breaker.py``) and the next model is tried; a spend cap, a permission or a bad request is the
caller's answer and is never routed around. A breaker past its cooldown is first given a cheap
health probe (``probe.py``). With ``[router] escalate`` (the default) a non-streamed answer
that fails a check (``escalation.py``: empty, malformed, low confidence, or a verifier's no) is
asked again of the next bigger allowed model; the decision, the ``router.escalated`` audit entry
and the cost reports say how often and what that cost.

Every decision is returned to the caller (``RouteDecision.to_dict`` / ``headers``) and lands in
the audit log (``router.decision``, or ``router.refused`` naming the constraint).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sovereign.errors import (
    BackendError,
    EgressDeniedError,
    ModelUnavailableError,
    RoutingRefusedError,
)
from sovereign.governance.governed_model import GovernedModel
from sovereign.governance.keys import Principal
from sovereign.kernel.messages import ChatRequest, ChatResponse, StreamEvent, Thinking, Timings, Usage
from sovereign.kernel.registry import ModelSpec
from sovereign.router.breaker import Breakers
from sovereign.router.classifier import EFFORT_BUDGET, Difficulty, classify
from sovereign.router.escalation import Escalation, answer_problem, verifier_request, verifier_says_wrong
from sovereign.router.policy import Policy, allowed_models
from sovereign.router.probe import Prober
from sovereign.router.reasoning_profile import Profiles, load_profiles, measured_choice, reasoning_for

if TYPE_CHECKING:
    from sovereign.config import RouterSettings
    from sovereign.services import Services

__all__ = ["AUTO", "FAILOVER_ERRORS", "RouteDecision", "Router", "RoutedStream", "answer_problem", "choose_route"]

AUTO = "auto"
TIER_RANK = {"small": 0, "medium": 1, "large": 2, "frontier": 3}
FAILOVER_ERRORS = (ModelUnavailableError, BackendError, EgressDeniedError, asyncio.TimeoutError, ConnectionError,
                   OSError)
"""What fails a call over to the next model (a cap, a permission or a bad request never does)."""
_FAILOVER = FAILOVER_ERRORS


@dataclass
class RouteDecision:
    """Which model serves the request, with which reasoning effort, and why."""

    model: str
    effort: str
    budget_tokens: int
    kind: str
    tier: str
    reason: str
    data_class: str
    plan: list[str]
    decision_us: float
    tried: list[dict[str, str]] = field(default_factory=list)
    escalated_from: str | None = None
    escalation: Escalation | None = None
    """A failed answer check and what it led to (None: every check passed, or none ran)."""
    check_cost_usd: float = 0.0
    """What the answer checks cost (a verifier's calls)."""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "effort": self.effort, "budget_tokens": self.budget_tokens, "kind": self.kind,
                "tier": self.tier, "reason": self.reason, "data_class": self.data_class, "plan": self.plan,
                "decision_us": round(self.decision_us, 1), "fallbacks": self.tried,
                "escalated_from": self.escalated_from, "check_cost_usd": self.check_cost_usd,
                "escalation": self.escalation.to_dict() if self.escalation is not None else None}

    def headers(self) -> dict[str, str]:
        return {"X-Sovereign-Route-Model": self.model, "X-Sovereign-Route-Effort": self.effort,
                "X-Sovereign-Route-Reason": self.reason.encode("ascii", "replace").decode()}


@dataclass
class RoutedStream:
    decision: RouteDecision
    model: GovernedModel
    first: StreamEvent
    events: AsyncIterator[StreamEvent]


def effort_of(thinking: Thinking) -> str:
    """The effort name of a caller's own reasoning setting."""
    if not thinking.enabled:
        return "none"
    budget = thinking.budget_tokens or 0
    return next((name for name, limit in (("low", EFFORT_BUDGET["low"]), ("medium", EFFORT_BUDGET["medium"]))
                 if budget <= limit), "high")


def _price_key(spec: ModelSpec) -> float:
    return 0.0 if spec.is_local else spec.prices.input + spec.prices.output


def choose_route(request: ChatRequest, allowed: list[ModelSpec], profiles: Profiles, z: float = 1.96,
                 explicit_thinking: bool = False) -> tuple[list[ModelSpec], Difficulty]:
    """Difficulty, then cost, over the policy's ``allowed`` models: the order to try them in and
    the difficulty as decided (its effort, budget and reason; with ``explicit_thinking``, the
    request's own reasoning setting). Pure: the benchmark calls it too."""
    difficulty = classify(request)
    need = TIER_RANK.get(difficulty.tier, 0)

    def order(spec: ModelSpec) -> tuple:
        rank = TIER_RANK.get(spec.tier, 1)
        below = rank < need
        return (below, -rank if below else 0, _price_key(spec), rank)

    ordered = sorted(allowed, key=order)
    choice = None if explicit_thinking else measured_choice(
        difficulty.kind, [spec.name for spec in ordered], profiles, z, may_reason=difficulty.budget_tokens > 0)
    if choice is not None:  # measured on several allowed models: the quickest good-enough cell
        ordered = sorted(ordered, key=lambda spec: spec.name != choice.model)
        difficulty = replace(difficulty, effort=difficulty.effort if choice.thinking else "none",
                             budget_tokens=difficulty.budget_tokens if choice.thinking else 0,
                             reason=f"{difficulty.reason}; {choice.reason}")
    elif explicit_thinking:
        difficulty = replace(difficulty, effort=effort_of(request.thinking),
                             budget_tokens=request.thinking.budget_tokens or 0,
                             reason=f"{difficulty.reason}; reasoning effort as the request set it")
    else:
        difficulty = reasoning_for(request, ordered[0].name, difficulty, profiles)
    if choice is None and TIER_RANK.get(ordered[0].tier, 0) < need:
        difficulty = replace(difficulty, reason=f"{difficulty.reason}; no {difficulty.tier}-tier model is allowed, "
                                                "so the biggest allowed one")
    return ordered, difficulty


class Router:
    """Routes ``auto`` requests for ``services`` (see the module docstring)."""

    def __init__(self, services: Services, settings: RouterSettings | None = None,
                 breakers: Breakers | None = None) -> None:
        self.services = services
        self.settings = settings or services.settings.router
        self.breakers = breakers or Breakers(self.settings.failures_to_open, self.settings.cooldown_s)
        self.prober = Prober(self)
        self.profiles: Profiles = (load_profiles(self.settings.reasoning_profile or None)
                                   if self.settings.use_reasoning_profiles else {})

    # --- planning (pure) ------------------------------------------------------------------------

    def policy(self) -> Policy:
        offline = self.settings.offline
        if offline is None:
            offline = self.services.settings.egress.mode == "offline"
        return Policy(tuple(self.settings.jurisdictions), tuple(self.settings.licences), offline)

    def candidates(self) -> list[ModelSpec]:
        names = self.settings.candidates or list(dict.fromkeys(
            self.services.settings.model_for(role) for role in ("instant", "tools")))
        return [self.services.registry.get(name) for name in names]

    def plan(self, request: ChatRequest, principal: Principal | None, *, data_class: str | None = None,
             explicit_thinking: bool = False) -> RouteDecision:
        """Policy, then difficulty, then cost: the decision and the order to try models in."""
        started = time.perf_counter()
        data_class = data_class or self.settings.default_data_class
        allowed = allowed_models(self.candidates(), self.policy(), data_class, principal)
        ordered, difficulty = choose_route(request, allowed, self.profiles, self.settings.profile_z, explicit_thinking)
        return RouteDecision(model=ordered[0].name, effort=difficulty.effort, budget_tokens=difficulty.budget_tokens,
                             kind=difficulty.kind, tier=difficulty.tier, reason=difficulty.reason, data_class=data_class,
                             plan=[s.name for s in ordered], decision_us=(time.perf_counter() - started) * 1e6)

    def routable(self, principal: Principal | None) -> list[str]:
        """The models ``auto`` could send this principal's requests to (the least strict data
        class, ``public``); empty when the policy or the key's scopes leave none."""
        try:
            return [spec.name for spec in allowed_models(self.candidates(), self.policy(), "public", principal)]
        except RoutingRefusedError:
            return []

    def explain(self, request: ChatRequest, principal: Principal | None, *, data_class: str | None = None,
                explicit_thinking: bool = False) -> dict[str, Any]:
        """What ``auto`` would do with ``request`` now, without calling a model: the decision, the
        breakers of the plan's models (those cooling down would be skipped), and the reasoning
        profile measured for the chosen model and kind. A refusal raises, naming the constraint,
        as a real request would."""
        decision = self.plan(request, principal, data_class=data_class, explicit_thinking=explicit_thinking)
        breakers = {name: state for name, state in self.breakers.status().items() if name in decision.plan}
        measure = self.profiles.get(decision.model, {}).get(decision.kind)
        return {"object": "route.decision", **decision.to_dict(),
                "cooling_down": [name for name, state in breakers.items() if state["open"]],
                "breakers": breakers, "reasoning_profile": None if measure is None else {
                    key: value for key, value in asdict(measure).items() if value is not None}}

    def _routed_request(self, request: ChatRequest, decision: RouteDecision, name: str,
                        checked: bool = False) -> ChatRequest:
        """``request`` for ``name`` with the decided effort; a ``checked`` (non-streamed, escalating)
        answer also brings its log probabilities when ``min_confidence`` is set."""
        thinking = Thinking(enabled=decision.budget_tokens > 0, budget_tokens=decision.budget_tokens or None)
        logprobs = request.logprobs or (checked and self.settings.escalate and self.settings.min_confidence > 0)
        return replace(request, model=name, thinking=thinking, logprobs=logprobs)

    # --- dispatch -------------------------------------------------------------------------------

    def decide(self, request: ChatRequest, principal: Principal, data_class: str | None,
                explicit_thinking: bool = False) -> RouteDecision:
        """``plan``, with a refusal audited (``router.refused``) before it is raised."""
        try:
            return self.plan(request, principal, data_class=data_class, explicit_thinking=explicit_thinking)
        except RoutingRefusedError as exc:
            self.services.audit.append("router.refused", principal.identity_name, {
                "owner": principal.spend_owner_id, "data_class": data_class or self.settings.default_data_class,
                "reason": exc.message})
            raise

    async def _order(self, decision: RouteDecision) -> list[str]:
        if self.settings.probe:
            await self.prober.probe_due(decision.plan)  # a due breaker's trial is a cheap probe
        ready = [name for name in decision.plan if self.breakers.available(name)]
        if not ready:
            raise ModelUnavailableError(
                "every model the policy allows is cooling down after failures: " + ", ".join(
                    f"{n} ({s['last_error']}, retry in {s['retry_in_s']:.0f}s)" for n, s in self.breakers.status().items()
                    if n in decision.plan))
        return ready

    def _failed(self, decision: RouteDecision, name: str, exc: BaseException) -> None:
        error = getattr(exc, "message", None) or type(exc).__name__
        self.breakers.failed(name, error)
        decision.tried.append({"model": name, "error": error})

    def _record(self, principal: Principal, decision: RouteDecision, request_id: str | None, cost: float) -> None:
        self.services.audit.append("router.decision", principal.identity_name, {
            "owner": principal.spend_owner_id, "request_id": request_id, "cost_usd": cost, **decision.to_dict()})

    async def complete(self, request: ChatRequest, principal: Principal, *, data_class: str | None = None,
                       explicit_thinking: bool = False, request_id: str | None = None,
                       agent_id: str | None = None, run_id: str | None = None) -> tuple[ChatResponse, RouteDecision, float]:
        """Route and answer ``request``; returns the response, the decision and the cost (USD)."""
        decision = self.decide(request, principal, data_class, explicit_thinking)
        for name in await self._order(decision):
            model = await self._governed(principal, name, request_id, agent_id, run_id, decision)
            if model is None:
                continue
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    response = await model.complete(self._routed_request(request, decision, name, checked=True))
            except _FAILOVER as exc:
                self._failed(decision, name, exc)
                continue
            self.breakers.succeeded(name)
            decision.model = name
            cost = model.last.cost_usd if model.last is not None else 0.0
            if self.settings.escalate:
                response, cost = await self._escalate(request, principal, decision, response, cost,
                                                      request_id, agent_id, run_id)
                cost += decision.check_cost_usd
            if not request.logprobs:
                response.logprobs = None  # asked for the check, not by the caller
            self._record(principal, decision, request_id, cost)
            return response, decision, cost
        raise self._exhausted(principal, decision, request_id)

    async def stream(self, request: ChatRequest, principal: Principal, *, data_class: str | None = None,
                     explicit_thinking: bool = False, request_id: str | None = None,
                     agent_id: str | None = None, run_id: str | None = None) -> RoutedStream:
        """Route ``request`` and start its stream; models are failed over until one yields its
        first event (after that the answer is committed to that model)."""
        decision = self.decide(request, principal, data_class, explicit_thinking)
        for name in await self._order(decision):
            model = await self._governed(principal, name, request_id, agent_id, run_id, decision)
            if model is None:
                continue
            events = model.stream(self._routed_request(request, decision, name))
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    first = await anext(events)
            except StopAsyncIteration:
                first = StreamEvent(finish_reason="stop", usage=Usage(), timings=Timings())
            except _FAILOVER as exc:
                await events.aclose()
                self._failed(decision, name, exc)
                continue
            self.breakers.succeeded(name)
            decision.model = name
            self._record(principal, decision, request_id, 0.0)
            return RoutedStream(decision, model, first, events)
        raise self._exhausted(principal, decision, request_id)

    async def _governed(self, principal: Principal, name: str, request_id: str | None, agent_id: str | None,
                        run_id: str | None, decision: RouteDecision) -> GovernedModel | None:
        try:
            return await self.services.governed_model(principal, name, request_id=request_id, agent_id=agent_id,
                                                      run_id=run_id)
        except _FAILOVER as exc:  # could not load / reach it
            self._failed(decision, name, exc)
            return None

    def _exhausted(self, principal: Principal, decision: RouteDecision, request_id: str | None) -> ModelUnavailableError:
        self.services.audit.append("router.failed", principal.identity_name, {
            "owner": principal.spend_owner_id, "request_id": request_id, **decision.to_dict()})
        tried = "; ".join(f"{t['model']}: {t['error']}" for t in decision.tried)
        return ModelUnavailableError(f"every allowed model failed ({tried})")

    async def _escalate(self, request: ChatRequest, principal: Principal, decision: RouteDecision,
                        response: ChatResponse, cost: float, request_id: str | None, agent_id: str | None,
                        run_id: str | None) -> tuple[ChatResponse, float]:
        """Check the answer (``escalation.py``); when a check fails ask the next bigger allowed model."""
        problem = answer_problem(request, response, self.settings.min_confidence)
        if problem is None and self.settings.verifier:
            problem = await self._verify(request, principal, decision, response, request_id, agent_id, run_id)
        if problem is None:
            return response, cost
        escalation = decision.escalation = Escalation(problem, decision.model, first_cost_usd=cost,
                                                      check_cost_usd=decision.check_cost_usd)
        current = TIER_RANK.get(self.services.registry.get(decision.model).tier, 0)
        bigger = [n for n in decision.plan if TIER_RANK.get(self.services.registry.get(n).tier, 0) > current
                  and self.breakers.available(n)]
        model = await self._governed(principal, bigger[0], request_id, agent_id, run_id, decision) if bigger else None
        if model is None:
            decision.reason += f"; check failed ({problem}) but no bigger model is allowed or up"
            return response, cost
        name = bigger[0]
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                better = await model.complete(self._routed_request(request, decision, name))
        except _FAILOVER as exc:
            self._failed(decision, name, exc)
            decision.reason += f"; check failed ({problem}), escalation to {name} failed"
            return response, cost
        self.breakers.succeeded(name)
        escalation.to, escalation.extra_cost_usd = name, model.last.cost_usd if model.last is not None else 0.0
        self.services.audit.append("router.escalated", principal.identity_name, {
            "owner": principal.spend_owner_id, "request_id": request_id, **escalation.to_dict()})
        decision.escalated_from, decision.model = decision.model, name
        decision.reason += f"; escalated to {name}: {problem}"
        return better, cost + escalation.extra_cost_usd

    async def _verify(self, request: ChatRequest, principal: Principal, decision: RouteDecision,
                      response: ChatResponse, request_id: str | None, agent_id: str | None,
                      run_id: str | None) -> str | None:
        """Ask ``[router] verifier`` whether the answer is right; its cost is the check's. A
        verifier that fails or is not allowed leaves the answer as it is."""
        verifier = self.settings.verifier
        model = await self._governed(principal, verifier, request_id, agent_id, run_id, decision)
        if model is None:
            return None
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                reply = await model.complete(verifier_request(request, response, verifier))
        except _FAILOVER as exc:
            self._failed(decision, verifier, exc)
            return None
        decision.check_cost_usd += model.last.cost_usd if model.last is not None else 0.0
        return f"the verifier ({verifier}) judged the answer wrong" if verifier_says_wrong(reply) else None
