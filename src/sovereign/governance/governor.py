"""The governed path's one implementation: authorise, reserve against every cap, settle into the
ledger and the audit log, tell observers. ``GovernedModel`` (``governed_model.py``) calls it
around each model call; nothing else accounts for model calls.

A ``Governor`` holds the parts (the ``SpendGuard``, the ``UsageLedger``, the ``AuditLog`` and
the price sheets); ``Services.governor`` builds the one of the running OS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from sqlite3 import Connection

from sovereign.finops.energy import EnergyModel, LocalCharge
from sovereign.finops.ledger import UsageLedger, price
from sovereign.governance.audit import AuditLog
from sovereign.governance.authz import authorize
from sovereign.governance.journal import Journal
from sovereign.governance.keys import Principal
from sovereign.governance.spend import CapExceededError, Reservation, SpendGuard
from sovereign.governance.spend_lease import SpendLease
from sovereign.kernel.messages import ChatRequest, Message, Timings, ToolSpec, Usage
from sovereign.kernel.registry import PriceSheet

__all__ = ["CallObserver", "CallRecord", "CallScope", "Governor"]


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who a model call is for: the principal (identity id, key, scopes), the agent identity
    whose caps it counts against (if any), and the run or request it belongs to."""

    principal: Principal
    agent_id: str | None = None
    run_id: str | None = None
    request_id: str | None = None

    @property
    def key_id(self) -> str | None:
        return self.principal.key_id or None  # a local principal (CLI, MCP) has no key


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One settled model call, as observers (metrics, tracing) see it."""

    model: str
    usage: Usage
    timings: Timings
    cost_usd: float
    scope: CallScope
    reservation: str
    reserved_usd: float
    local: LocalCharge | None = None
    """For a local model: the energy and hardware estimate that is its cost."""


CallObserver = Callable[[CallRecord], None]
"""Called after every settled call (Prometheus metrics, spend gauges, tracing attributes)."""


_TOOL_CACHE_SIZE = 256
_MESSAGE_CACHE_SIZE = 4096


def _agent_id(scope: CallScope) -> str | None:
    """The agent identity whose caps a call counts against."""
    return scope.agent_id or scope.principal.agent_id


def _tools_chars(tools: list[ToolSpec], cache: dict[int, tuple[ToolSpec, int]]) -> int:
    """Characters of the tools' schemas; an agent offers the same specs every turn, so each is
    measured once (a small cache, emptied when full: HTTP requests bring new specs each time)."""
    total = 0
    for spec in tools:
        hit = cache.get(id(spec))
        if hit is None or hit[0] is not spec:
            if len(cache) >= _TOOL_CACHE_SIZE:
                cache.clear()
            hit = cache[id(spec)] = (spec, len(json.dumps(spec.parameters)) + len(spec.description))
        total += hit[1]
    return total


def _messages_chars(messages: list[Message], cache: dict[int, tuple[Message, str | None, int]]) -> int:
    """Characters of the messages' text, reasoning and tool calls; a run sends the messages of
    every earlier turn again, so each is measured once (a bounded cache, emptied when full; a
    message whose text was replaced since is measured again)."""
    total = 0
    for message in messages:
        hit = cache.get(id(message))
        if hit is None or hit[0] is not message or hit[1] is not message.content:
            chars = len(message.content or "") + len(message.reasoning_content or "")
            for call in message.tool_calls:
                chars += len(call.arguments) + len(call.name)
            if len(cache) >= _MESSAGE_CACHE_SIZE:
                cache.clear()
            hit = cache[id(message)] = (message, message.content, chars)
        total += hit[2]
    return total


@dataclass
class Governor:
    """Authorisation, spend caps, ledger and audit for model calls (see the module docstring)."""

    spend: SpendGuard
    ledger: UsageLedger
    audit: AuditLog
    prices: Callable[[str], PriceSheet]
    default_max_tokens: int = 512
    observers: list[CallObserver] = field(default_factory=list)
    energy: EnergyModel | None = None
    """Prices calls on local models (``is_local``) by energy and hardware (``finops.energy``)."""
    is_local: Callable[[str], bool] = lambda name: False
    _tool_sizes: dict[int, tuple[ToolSpec, int]] = field(default_factory=dict, repr=False)
    _meter_starts: dict[int, tuple[Reservation, list[float]]] = field(default_factory=dict, repr=False)
    _message_sizes: dict[int, tuple[Message, str | None, int]] = field(default_factory=dict, repr=False)

    def authorize(self, scope: CallScope, model: str) -> None:
        """Role ``use`` and the key's model scope, or ``PermissionDeniedError`` (403)."""
        authorize(scope.principal, model=model, action="use")

    def worst_case(self, request: ChatRequest) -> tuple[float, int]:
        """Upper bounds of a call's cost and tokens: the prompt at two characters a token (plus
        framing) and every output token the request allows, at the model's prices."""
        chars = _messages_chars(request.messages, self._message_sizes) + _tools_chars(request.tools, self._tool_sizes)
        prompt_tokens = chars // 2 + 16 * len(request.messages) + 64
        output = (request.max_tokens or self.default_max_tokens) + (
            (request.thinking.budget_tokens or 0) if request.thinking.enabled else 0)
        cost = self.prices(request.model).cost(cached_tokens=0, uncached_tokens=prompt_tokens, output_tokens=output)
        return cost, prompt_tokens + output

    def lease(self, scope: CallScope) -> SpendLease:
        """A budget lease for the calls of one run made in ``scope`` (see ``spend_lease``)."""
        return SpendLease(self.spend, scope.key_id, scope.principal.spend_owner_id, _agent_id(scope))

    def reserve(self, scope: CallScope, request: ChatRequest, journal: Journal,
                lease: SpendLease | None = None) -> Reservation:
        """Reserve the worst case against every cap that applies (key, agent, owner, global),
        committed through ``journal`` before the call — drawn from ``lease`` when given;
        ``CapExceededError`` (429) names the cap."""
        cost, tokens = self.worst_case(request)
        return self.reserve_amount(scope, cost, tokens, journal, lease, model=request.model)

    def reserve_units(self, scope: CallScope, model: str, input_units: int, output_units: int,
                      journal: Journal) -> Reservation:
        """``reserve`` for a call that is not a chat request (a perception model): the worst case
        is given in the units its ledger row counts as prompt and completion tokens."""
        cost = self.prices(model).cost(cached_tokens=0, uncached_tokens=input_units, output_tokens=output_units)
        return self.reserve_amount(scope, cost, input_units + output_units, journal, model=model)

    def reserve_amount(self, scope: CallScope, cost: float, tokens: int, journal: Journal,
                       lease: SpendLease | None = None, *, model: str | None = None) -> Reservation:
        """Reserve a known amount (a call whose size is known before it runs, e.g. embeddings)
        against every cap, as ``reserve`` does for a chat request's worst case; ``model`` (a
        registry name) meters the energy of a local call."""
        try:
            if lease is not None:
                reservation = journal.now(lambda conn: lease.draw_in(conn, cost, tokens))
            else:
                reservation = journal.now(lambda conn: self.spend.reserve_in(
                    conn, scope.key_id, scope.principal.spend_owner_id, _agent_id(scope), cost, tokens))
        except CapExceededError as exc:
            self.spend.refused(exc, scope.principal.identity_name)
            raise
        if self.energy is not None and model is not None and self.is_local(model):
            start = self.energy.start()  # RAPL counters, where readable
            if start is not None:
                self._meter_starts[id(reservation)] = (reservation, start)
        return reservation

    def release(self, reservation: Reservation) -> None:
        """The call failed or was abandoned: its reservation stops holding budget."""
        self._meter_starts.pop(id(reservation), None)
        if reservation.lease is not None:
            reservation.lease.release(reservation)
        else:
            self.spend.release(reservation)

    def settle(self, scope: CallScope, reservation: Reservation, model: str, usage: Usage, timings: Timings,
               journal: Journal) -> CallRecord:
        """Price the call; its ledger row, settled reservation and ``model.call`` audit entry go
        through ``journal`` as one write; observers are told at once."""
        started = self._meter_starts.pop(id(reservation), None)
        local = None
        if self.energy is not None and self.is_local(model):
            local = self.energy.charge(timings.latency_ms / 1000, started[1] if started else None)
        cost = local.usd if local is not None else price(usage, self.prices(model))
        record = CallRecord(model=model, usage=usage, timings=timings, cost_usd=cost, scope=scope,
                            reservation=reservation.id, reserved_usd=reservation.max_cost_usd, local=local)
        journal.later(lambda conn: self._write(conn, record, reservation))
        for observer in self.observers:
            observer(record)
        return record

    def _write(self, conn: Connection, record: CallRecord, reservation: Reservation) -> None:
        scope, usage = record.scope, record.usage
        principal = scope.principal
        self.ledger.record_in(conn, model=record.model, usage=usage, timings=record.timings, cost=record.cost_usd,
                              principal=principal.identity_id, request_id=scope.run_id or scope.request_id,
                              owner_id=principal.spend_owner_id, agent_id=_agent_id(scope), key_id=scope.key_id,
                              run_id=scope.run_id, local=record.local, reservation=reservation.id)
        if reservation.lease is not None:
            reservation.lease.settle_in(conn, reservation, record.cost_usd, usage.total_tokens)
        else:
            self.spend.settle_in(conn, reservation, record.cost_usd, usage.total_tokens, audit=False)
        self.audit.append_in(conn, "model.call", principal.identity_name, {
            "model": record.model, "owner": principal.spend_owner_id, "identity_id": principal.identity_id,
            "key_id": scope.key_id, "agent_id": scope.agent_id, "run_id": scope.run_id,
            "request_id": scope.request_id, "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": usage.cached_tokens, "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "cost_usd": record.cost_usd,
            "reservation": reservation.id, "reserved_usd": reservation.max_cost_usd,
            "latency_ms": round(record.timings.latency_ms, 3),
            **({"cost_kind": "energy", "energy_j": round(record.local.energy_j, 3),
                "energy_source": record.local.source} if record.local is not None else {}),
        })
