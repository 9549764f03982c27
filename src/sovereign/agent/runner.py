"""The runner: starts, resumes and watches agent runs. It resolves models and puts them behind
the governed path (``GovernedModel``: the caller's principal, spend caps, ledger, audit), stores
every step, and hands the loop itself to ``_loop.Session``.

A fresh run and a resumed one take the same path: the stored steps say which state comes next,
and no tool call with a stored result runs again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovereign.agent._guard import RunGuard, open_memory, public_access, recall_for
from sovereign.agent._journal import SessionJournal
from sovereign.agent._loop import MODEL, TOOLS, VERIFY, Session
from sovereign.agent.agent import Agent, AgentConfig, ToolResolver
from sovereign.agent.budget import Budget, RunUsage
from sovereign.agent.code_mode import CODE, code_resume_state, system_prompt
from sovereign.agent.compaction import BeforeCompaction
from sovereign.agent.errors import RunNotResumableError
from sovereign.agent.hooks import Approver, EventListener, RunEvent
from sovereign.agent.loop_detect import LoopDetector
from sovereign.agent.planned import PLANNED_MODEL, NoModel, planned_turn, planned_turn_of, taint_from_arguments
from sovereign.agent.steps import (
    FinalAnswerStep,
    ModelCallStep,
    Step,
    SummaryStep,
    TaskStep,
    ToolCallStep,
    ToolResultStep,
    VerificationStep,
)
from sovereign.agent import leases
from sovereign.agent.store import RunRecord, RunStore
from sovereign.errors import InvalidRequestError, NotFoundError, SovereignError
from sovereign.governance.governed_model import GovernedModel
from sovereign.governance.governor import CallScope
from sovereign.kernel.messages import ChatRequest, Message, ToolSpec
from sovereign.kernel.registry import PriceSheet

if TYPE_CHECKING:
    from sqlite3 import Connection

    from sovereign.governance.governor import Governor
    from sovereign.governance.keys import Principal
    from sovereign.governance.spend_lease import SpendLease
    from sovereign.governance.tracing import Tracing
    from sovereign.kernel.protocol import Model
    from sovereign.services import Services
    from sovereign.store import Database

__all__ = ["RunHandle", "RunResult", "Runner"]

_DEFAULT_WINDOW = 8192


@dataclass(slots=True, repr=False)
class RunResult:
    """How a run ended: the answer (or a partial one), why it stopped, and what it spent."""

    run_id: str
    agent: str
    status: str
    stop_reason: str
    answer: str | None
    partial: bool
    verified: bool | None
    steps: list[Step]
    spent: RunUsage

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def __repr__(self) -> str:  # short: the steps are in ``runs show``, not in every log line
        return (f"RunResult(run_id={self.run_id!r}, status={self.status!r}, stop_reason={self.stop_reason!r}, "
                f"answer={(self.answer or '')[:60]!r}, steps={len(self.steps)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "agent": self.agent, "status": self.status, "stop_reason": self.stop_reason,
            "answer": self.answer, "partial": self.partial, "verified": self.verified,
            "steps": len(self.steps), "usage": self.spent.to_dict(),
        }


@dataclass(slots=True)
class RunHandle:
    """A run going on in the background: its id, its task, and a way to cancel it."""

    run_id: str
    task: asyncio.Task[RunResult]

    def cancel(self) -> None:
        self.task.cancel()

    async def result(self) -> RunResult:
        return await self.task


@dataclass
class Runner:
    """Drives agents. Inside the OS pass ``services``; tests pass ``model`` and ``store`` directly.

    ``model`` overrides model resolution (a ``Model`` for every name, or a dict by name);
    ``prices`` overrides the registry's price sheets; ``approver`` decides ``needs_approval``
    tools; ``before_compaction(facts)`` is called before older steps are summarised.

    Governance (``_guard``): every run has the injection guard; with ``services`` each tool call
    is audited and public agents see only what their owner exposed; a ``principal`` passed to
    ``run``/``start``/``resume`` limits tools to its key's scopes and owns the run.
    Model calls: with ``governor`` (inside the OS: ``services.governor``) every call of the run
    takes the governed path as the principal (default: the local admin) — model scope, spend
    caps in addition to the agent's own budget, ledger, audit. A refused cap stops the run. ``memory`` (a ``MemoryStore``; with
    ``services`` the one in their database, when memory is in use there) gives each new run a
    recall prefix of ``memory_k`` memories and is flushed before compaction.

    ``tracing`` (default: the services') puts each run in an ``invoke_agent`` span, each tool
    execution in an ``execute_tool`` span under it, and traces the models given as ``model``
    (the services' own models are traced where they are served).
    """

    services: Services | None = None
    store: RunStore | None = None
    model: Model | dict[str, Model] | None = None
    prices: PriceSheet | None = None
    approver: Approver | None = None
    before_compaction: BeforeCompaction | None = None
    workspace: Path | None = None
    governor: Governor | None = None
    memory: Any = None
    memory_k: int = 5
    listeners: list[EventListener] = field(default_factory=list)
    handles: dict[str, RunHandle] = field(default_factory=dict)
    tracing: Tracing | None = None

    def __post_init__(self) -> None:
        if self.store is None:
            if self.services is None:
                raise InvalidRequestError("Runner needs services or a store")
            self.store = RunStore(self.services.db)
        if self.governor is None and self.services is not None:
            self.governor = self.services.governor
        if self.tracing is None and self.services is not None:
            self.tracing = self.services.tracing
        if self.tracing is not None and self.model is not None:
            wrap = self.tracing.wrap
            self.model = {k: wrap(m) for k, m in self.model.items()} if isinstance(self.model, dict) else wrap(self.model)

    # --- public API ------------------------------------------------------------------------------

    async def run(self, agent: Agent, task: str, *, run_id: str | None = None,
                  principal: Principal | None = None) -> RunResult:
        """Run ``agent`` on ``task`` to the end (answer, budget, loop, failure)."""
        agent, principal = self._owned(agent, principal)
        record = self._create(agent, task, run_id, model=self._routed(agent, task, principal))
        return await self._drive(record.id, agent, principal, record)

    async def resume(self, run_id: str, *, agent: Agent | None = None, budget: Budget | None = None,
                     resolve: ToolResolver | None = None, principal: Principal | None = None) -> RunResult:
        """Continue a stored run where it stopped; completed tool calls are not repeated.
        ``RunBusyError`` if a live process is driving it."""
        agent = self._resumable(run_id, agent, budget, resolve)
        return await self._drive(run_id, agent, self._caller(principal, agent), self._claim(run_id))

    async def run_call(self, agent: Agent, tool: str, arguments: dict[str, Any] | str, *, task: str,
                   run_id: str | None = None, principal: Principal | None = None) -> RunResult:
        """Run one planned tool call of ``agent``'s as a run of its own (``agent/planned.py``): no
        model call; the call takes the governed path and its result is the answer. ``task`` says
        what the call is for (shown with the run)."""
        agent, principal = self._owned(agent, principal)
        record = self._create(agent, task, run_id, model=PLANNED_MODEL, then=[planned_turn(tool, arguments)])
        return await self._drive(record.id, agent, principal, record)

    def start(self, agent: Agent, task: str, *, run_id: str | None = None,
              principal: Principal | None = None) -> RunHandle:
        """Create the run now (its id is known at once) and drive it in the background."""
        agent, principal = self._owned(agent, principal)
        record = self._create(agent, task, run_id, model=self._routed(agent, task, principal))
        return self._spawn(record.id, agent, principal, record)

    def start_resume(self, run_id: str, *, agent: Agent | None = None, budget: Budget | None = None,
                     resolve: ToolResolver | None = None, principal: Principal | None = None) -> RunHandle:
        agent = self._resumable(run_id, agent, budget, resolve)
        return self._spawn(run_id, agent, self._caller(principal, agent), self._claim(run_id))

    def create(self, agent: Agent, task: str, *, run_id: str | None = None) -> str:
        """Store a new run and its task step (to drive later with ``resume``); returns the run id."""
        return self._create(agent, task, run_id, claim=False).id

    def _caller(self, principal: Principal | None, agent: Agent | None = None) -> Principal | None:
        """Who drives the run: ``principal``; else (inside the OS) the identity the agent names as
        its owner, or the local admin."""
        if principal is not None or self.services is None:
            return principal
        if agent is not None and agent.owner:
            try:
                return self.services.keys.principal_for(agent.owner)
            except NotFoundError:
                pass
        return self.services.keys.local_principal()

    def _owned(self, agent: Agent, principal: Principal | None) -> tuple[Agent, Principal | None]:
        """The caller owns a new run: its identity id becomes the agent's owner (ledger, memory,
        approvals)."""
        principal = self._caller(principal, agent)
        if principal is not None and agent.owner != principal.identity_id:
            agent = replace(agent, owner=principal.identity_id)
        return agent, principal

    def _routed(self, agent: Agent, task: str, principal: Principal | None, run_id: str | None = None) -> str | None:
        """``model = "auto"``: the model the router picks for the run from the task (policy first,
        then difficulty and cost; the decision is audited; a refusal is raised). The run is stored
        with that model and keeps it first (resumes too); the agent stays ``auto``, so each call
        can fail over along the plan (``_failover``). None for any other agent."""
        if agent.model != "auto" or self.services is None:
            return None
        from sovereign.router.failover import route_run

        caller = principal or self.services.keys.local_principal()
        return route_run(self.services.router, agent.name, task, [t.name for t in agent.tools], caller, run_id).model

    def _plan(self, agent: Agent, task: str, principal: Principal | None) -> list[str] | None:
        """An ``auto`` run's fail-over order: the router's plan for the task (None otherwise)."""
        if agent.model != "auto" or self.services is None:
            return None
        request = ChatRequest(model="auto", messages=[Message(role="user", content=task)],
                              tools=[ToolSpec(name=t.name) for t in agent.tools])
        return self.services.router.plan(request, principal or self.services.keys.local_principal()).plan

    def _failover(self, model: Model, plan: list[str] | None, principal: Principal | None, run_id: str,
                  govern: Callable[[Model], Model]) -> Model:
        """With a plan, the run's model fails over along it per call (``router.failover``)."""
        if plan is None or self.services is None:
            return model
        from sovereign.router.failover import FailoverModel

        async def resolve(name: str) -> Model:
            return govern(await self.resolve_model(name))

        caller = principal or self.services.keys.local_principal()
        return FailoverModel(self.services.router, model, plan, resolve, principal=caller, run_id=run_id)

    def _scope(self, principal: Principal | None, agent: Agent, run_id: str) -> CallScope | None:
        """Who the run's model calls are for (None without a governor: nothing is governed)."""
        if self.governor is None:
            return None
        if principal is None:
            raise InvalidRequestError("a governed run needs the caller's principal", param="principal")
        return CallScope(principal, agent_id=self._agent_identity(agent, principal), run_id=run_id)

    def _agent_identity(self, agent: Agent, principal: Principal) -> str | None:
        """The agent identity whose caps the run's spend counts against: the caller's when it is
        an agent, else the identity named like the agent (if there is one)."""
        if principal.agent_id is not None or self.services is None:
            return principal.agent_id
        row = self.services.db.query_one("SELECT id FROM identities WHERE name = ? AND kind = 'agent'", (agent.name,))
        return row["id"] if row is not None else None

    def _claim(self, run_id: str) -> RunRecord:
        """Take the run's lease (``RunBusyError`` if a live process holds it), then read it."""
        assert self.store is not None
        self.store.claim(run_id)
        try:
            return self.store.get(run_id)
        except BaseException:
            self.store.release(run_id)
            raise

    def _create(self, agent: Agent, task: str, run_id: str | None, *, claim: bool = True,
                model: str | None = None, then: list[Step] | None = None) -> RunRecord:
        """Store a new run: its task step, then the steps ``then`` (a planned call's turn, which
        no model reads: no system prompt or recall for it)."""
        if not task.strip():
            raise InvalidRequestError("the task is empty", param="task")
        run_id = run_id or "run_" + uuid.uuid4().hex[:20]
        instructions = ""
        if then is None:
            own = agent.instructions.strip()
            instructions = system_prompt(agent) + (f"\n{own}" if own else "")
            recalled = self._recall(agent, task)
            if recalled:
                instructions += f"\n\n{recalled}"
        step = TaskStep(index=0, task=task, instructions=instructions)
        config = agent.to_config().model_dump(mode="json")
        assert self.store is not None
        record = self.store.create(run_id=run_id, agent_config=config, task=task, owner=agent.owner,
                                   model=model or self.model_name_for(agent), first_step=step, claim=claim,
                                   then=then or ())
        self.emit(run_id, "status", data={"status": "running", "stop_reason": None})
        for stored in record.steps:
            self.emit(run_id, "step", step=stored)
        return record

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event of every run; returns the unsubscribe function."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    # --- what the loop asks of the runner --------------------------------------------------------

    def model_name_for(self, agent: Agent) -> str:
        if agent.model:
            return agent.model
        if self.services is not None:
            if agent.tier:
                spec = next((s for s in self.services.registry if s.tier == agent.tier), None)
                if spec is None:
                    raise InvalidRequestError(f"no model of tier '{agent.tier}' in the registry", param="tier")
                return spec.name
            return self.services.settings.model_for("tools")
        if self.model is not None and not isinstance(self.model, dict):
            return self.model.name
        raise InvalidRequestError(f"agent '{agent.name}' names no model", param="model")

    async def resolve_model(self, name: str) -> Model:
        if isinstance(self.model, dict) and name in self.model:
            return self.model[name]
        if self.model is not None and not isinstance(self.model, dict):
            return self.model
        if self.services is None:
            raise InvalidRequestError(f"no model '{name}' available to this runner", param="model")
        return await self.services.model(name)

    def prices_for(self, name: str) -> PriceSheet:
        if self.prices is not None:
            return self.prices
        if self.services is not None and name in self.services.registry:
            return self.services.registry.get(name).prices
        return PriceSheet()

    def context_window(self, agent: Agent, model: Model, name: str) -> int:
        if agent.context_window:
            return agent.context_window
        options = getattr(model, "options", None)
        if options is not None and getattr(options, "n_ctx", None):
            return int(options.n_ctx)
        if self.services is not None and name in self.services.registry:
            return min(self.services.registry.get(name).context_size, self.services.settings.kernel.n_ctx)
        return _DEFAULT_WINDOW

    @staticmethod
    def token_counter(model: Model) -> Callable[[str], int] | None:
        count = getattr(model, "count_tokens", None)
        if count is None or not getattr(model, "ready", True):
            return None
        return count

    def shares_database(self, db: Database) -> bool:
        """True when ``db`` is the run store's own (so writes can join a step's transaction)."""
        assert self.store is not None
        return db is self.store.db

    def emit(self, run_id: str, type_: str, *, step: Step | None = None, data: dict[str, Any] | None = None) -> None:
        if not self.listeners:
            return
        event = RunEvent(run_id=run_id, type=type_, step=step, data=data or {})
        for listener in list(self.listeners):
            listener(event)

    # --- internals -------------------------------------------------------------------------------

    def _memory(self) -> Any:
        self.memory = open_memory(self.services, self.memory)
        return self.memory

    def _recall(self, agent: Agent, task: str) -> str:
        """What memory holds about ``task``, for the system message of a new run."""
        store = self._memory()
        if store is None or not agent.owner or self.memory_k <= 0:
            return ""  # nothing to recall: the agent's visibility is not looked up for it
        return recall_for(store, public_access(self.services, agent), agent, task, self.memory_k)

    def _spawn(self, run_id: str, agent: Agent, principal: Principal | None, record: RunRecord) -> RunHandle:
        handle = RunHandle(run_id=run_id, task=asyncio.ensure_future(self._drive(run_id, agent, principal, record)))
        self.handles[run_id] = handle
        handle.task.add_done_callback(lambda _t: self.handles.pop(run_id, None))
        return handle

    def _resumable(self, run_id: str, agent: Agent | None, budget: Budget | None,
                   resolve: ToolResolver | None) -> Agent:
        assert self.store is not None
        record = self.store.get(run_id, with_steps=False)
        if record.status == "completed":
            raise RunNotResumableError(f"run '{run_id}' already completed")
        if agent is None:
            try:
                agent = AgentConfig.model_validate(record.agent_config).build(resolve)
            except SovereignError as exc:
                raise RunNotResumableError(f"run '{run_id}' cannot be rebuilt: {exc.message}") from exc
        return replace(agent, budget=budget) if budget is not None else agent

    async def _drive(self, run_id: str, agent: Agent, principal: Principal | None, record: RunRecord) -> RunResult:
        """Drive a run whose lease this process holds, from ``record`` (its stored state); the
        lease is given back however the drive ends."""
        assert self.store is not None
        try:
            if self.tracing is None:
                result = await self._drive_claimed(run_id, agent, principal, record)
            else:
                result = await self._drive_traced(run_id, agent, principal, record)
        except BaseException:
            self.store.release(run_id)
            raise
        leases.forget(run_id)  # the lease row went with the final step's transaction
        return result

    async def _drive_traced(self, run_id: str, agent: Agent, principal: Principal | None,
                            record: RunRecord) -> RunResult:
        assert self.tracing is not None
        with self.tracing.agent_run(agent.name, run_id, model=record.model or agent.model, owner=agent.owner,
                                    agent_id=getattr(principal, "agent_id", None)) as span:
            result = await self._drive_claimed(run_id, agent, principal, record)
            self.tracing.end_run(span, status=result.status, stop_reason=result.stop_reason,
                                 usage=result.spent.usage, answer=result.answer)
        return result

    async def _drive_claimed(self, run_id: str, agent: Agent, principal: Principal | None,
                             record: RunRecord) -> RunResult:
        assert self.store is not None
        spent = record.spent
        spent.started_at = time.monotonic()
        if planned_turn_of(record.steps) is not None:  # a planned call: no model to resolve or route
            return await self._drive_session(record, replace(agent, mode="tools"), principal, NoModel(),
                                             PLANNED_MODEL, None)
        name = record.model or self.model_name_for(agent)
        try:
            if name == "auto":  # stored without a decision (``create``, a swarm's child): route it now
                name = self._routed(agent, record.task, principal, run_id) or name
            model = await self.resolve_model(name)
            plan = self._plan(agent, record.task, principal)
        except SovereignError as exc:
            self.store.set_status(run_id, "failed", stop_reason=f"model unavailable: {exc.message}")
            raise
        return await self._drive_session(record, agent, principal, model, name, plan)

    async def _drive_session(self, record: RunRecord, agent: Agent, principal: Principal | None, model: Model,
                             name: str, plan: list[str] | None) -> RunResult:
        """The loop on ``model`` (named ``name``, put behind the governed path), from the stored steps."""
        assert self.store is not None
        run_id, spent = record.id, record.spent
        steps = [s for s in record.steps]
        journal = SessionJournal(self.store.db if self.governor is None else self.governor.spend.db)
        scope = self._scope(principal, agent, run_id)
        lease = self.governor.lease(scope) if self.governor is not None and scope is not None else None

        def govern(inner: Model) -> Model:
            """``inner`` behind the governed path for this run, drawing from its lease."""
            if self.governor is None or scope is None:
                return inner
            return GovernedModel(inner, self.governor, scope, journal=journal, lease=lease)

        model = self._failover(govern(model), plan, principal, run_id, govern)
        guard = RunGuard.build(agent, run_id, record.task, approver=self.approver, services=self.services,
                               principal=principal, memory=self._memory())
        guard.replay(steps)
        if (turn := planned_turn_of(steps)) is not None:
            taint_from_arguments(guard.taint, turn)
        session = Session(runner=self, agent=agent, run_id=run_id, model=model, model_name=name,
                          window=self.context_window(agent, model, name), steps=steps, spent=spent,
                          detector=_replay(agent, steps), guard=guard, journal=journal,
                          govern=govern, closing=self._closing(lease))
        journal.session = session
        state, answer = _next_state(steps, agent.mode)
        if state == VERIFY:
            session.answer = answer
        session.verify_failures = sum(1 for s in steps if isinstance(s, VerificationStep) and not s.passed)
        if record.status != "running":
            self.store.set_status(run_id, "running")
        try:
            final = await session.drive(state)
        finally:
            if lease is not None:
                lease.close()  # closed by the final commit already, unless that failed or could not join it
        return _result(record.id, agent.name, final, steps, spent)

    def _closing(self, lease: SpendLease | None) -> Callable[[Connection], None] | None:
        """The lease's close as a write of the run's final commit (after the settlement of its
        last call, so the fold counts it): the unspent rest goes back in the same transaction.
        None when the lease lives in another database."""
        if lease is None or not self.shares_database(lease.guard.db):
            return None
        return lease.close_in


def _next_state(steps: list[Step], mode: str) -> tuple[str, str | None]:
    """Where a run (fresh or interrupted) continues, read from its stored steps (and the answer
    to check when that is VERIFY)."""
    if mode == "code":
        found = code_resume_state(steps)
        if found is not None:
            return CODE if found[0] == CODE else VERIFY, found[1]
    calls = [s for s in steps if isinstance(s, ModelCallStep) and s.error is None]
    if calls and calls[-1].tool_calls:
        done = {s.call_id for s in steps if isinstance(s, ToolResultStep)}
        if any(call.id not in done for call in calls[-1].tool_calls):
            return TOOLS, None
    live = [s for s in steps if not isinstance(s, (FinalAnswerStep, SummaryStep))]
    last = live[-1] if live else None
    if isinstance(last, ModelCallStep) and last.error is None and not last.tool_calls:
        return VERIFY, _last_answer(steps)
    return MODEL, None


def _last_answer(steps: list[Step]) -> str:
    last = next(s for s in reversed(steps) if isinstance(s, ModelCallStep) and s.error is None)
    return last.content or ""


def _replay(agent: Agent, steps: list[Step]) -> LoopDetector:
    """A loop detector that has seen the stored run (so a resume does not forget repeats)."""
    detector = LoopDetector(policy=agent.loop)
    calls = {s.call_id: s for s in steps if isinstance(s, ToolCallStep)}
    for step in steps:
        if isinstance(step, ToolResultStep) and step.executed and step.call_id in calls:
            detector.record_call(step.name, calls[step.call_id].arguments, step.content)
        elif isinstance(step, ModelCallStep):
            detector.record_text(step.content)
    return detector


def _result(run_id: str, agent: str, final: FinalAnswerStep, steps: list[Step], spent: RunUsage) -> RunResult:
    return RunResult(run_id=run_id, agent=agent, status=final.status, stop_reason=final.stop_reason,
                     answer=final.answer, partial=final.partial, verified=final.verified, steps=steps, spent=spent)
