"""The orchestrator: plan a task as a graph of sub-tasks, run every ready sub-task as a sub-agent
(in parallel, up to the tree's concurrency), pass results along the edges, re-plan a failed
node, and synthesise the answer — all under one ``SwarmBudget`` for the whole tree.

A swarm is a run (``runs`` row; its steps are the orchestrator's own model calls) with a tree
(``swarm/store.py``). Each sub-agent is an ordinary run driven by the ``Runner`` through an
executor (asyncio here, or Ray workers), with its own instructions, a subset of the parent
agent's tools, a slice of the tree's budget, and — inside the OS — an agent identity owned by
the same human as the swarm, so its spend counts against both. The orchestrator's calls take
the governed path as the swarm's principal.

A plan node may instead be a tool node (``swarm/tool_nodes.py``): one direct call of a parent's
tool, its arguments filled from its dependencies' results, run as a planned-call run
(``agent/planned.py``) through the same executor — no model call, the same governed tool path,
one tool call of the tree's budget and no agent of it.

``Swarm.resume`` continues a swarm from the stored tree: finished nodes are not run again, a
node that was running is resumed as a run (its finished tool calls are not repeated).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sovereign.agent import leases
from sovereign.agent.agent import Agent, AgentConfig, ToolResolver
from sovereign.agent.budget import RunUsage
from sovereign.agent.errors import BudgetExceededError, RunNotFoundError
from sovereign.agent.runner import RunHandle
from sovereign.agent.steps import FinalAnswerStep, TaskStep
from sovereign.errors import InvalidRequestError, NotFoundError
from sovereign.swarm._calls import OrchestratorCalls
from sovereign.swarm.budget import SwarmBudget, TreeBudget
from sovereign.swarm.coverage import uncovered
from sovereign.swarm.critical import critical_path
from sovereign.swarm.executors import AsyncioExecutor, Executor, NodeJob, NodeOutcome
from sovereign.swarm.plan import (Plan, PlannedCall, SubTask, plan_problems, plan_request, repair_plan,
                                  replan_request, single_node_plan, subtask_problems)
from sovereign.swarm.store import NODE_TERMINAL, NodeRecord, SwarmStore
from sovereign.swarm.tool_nodes import substitute

if TYPE_CHECKING:
    from sovereign.agent.runner import Runner
    from sovereign.governance.keys import Principal

__all__ = ["Swarm", "SwarmResult"]

_RESULT_CHARS = 2000
"""How much of a dependency's answer a sub-agent is given (and the synthesis sees per node)."""


@dataclass(slots=True)
class SwarmResult:
    swarm_id: str
    status: str
    stop_reason: str
    answer: str | None
    tree: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def critical(self) -> dict[str, Any]:
        return self.tree.get("critical_path") or {}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.swarm_id, "status": self.status, "stop_reason": self.stop_reason,
                "answer": self.answer, "swarm": self.tree}


@dataclass
class Swarm:
    """Runs swarms on ``runner`` (its store, governor, models, tracing) through ``executor``
    (default: ``AsyncioExecutor`` on the same runner)."""

    runner: Runner
    executor: Executor | None = None
    resolve: ToolResolver | None = None
    """Rebuilds the parent agent's tools on resume (default: the built-ins)."""
    max_plan_attempts: int = 3
    max_retries: int = 1
    """Re-plans of one failed node before it stays failed."""
    plan_tokens: int = 1024
    synthesis_tokens: int = 512
    store: SwarmStore = field(init=False)
    delegation: Any = field(init=False)
    """``spawn_agent`` / ``wait_agents`` for the agents this swarm runs (``swarm/delegate.py``)."""

    def __post_init__(self) -> None:
        assert self.runner.store is not None
        self.store = SwarmStore(self.runner.store.db)
        if self.executor is None:
            self.executor = AsyncioExecutor(self.runner, self.resolve)
        from sovereign.swarm.delegate import Delegation

        self.delegation = Delegation(self)

    @property
    def executor_name(self) -> str:
        return getattr(self.executor, "name", "asyncio")

    # --- public API ------------------------------------------------------------------------------

    async def run(self, agent: Agent, task: str, *, budget: SwarmBudget | None = None,
                  principal: Principal | None = None, swarm_id: str | None = None) -> SwarmResult:
        drive = self._create(agent, task, budget or SwarmBudget(), principal, swarm_id)
        return await drive.execute()

    def start(self, agent: Agent, task: str, *, budget: SwarmBudget | None = None,
              principal: Principal | None = None, swarm_id: str | None = None) -> RunHandle:
        """Create the swarm now (its id is known at once) and drive it in the background; the
        handle is in ``runner.handles`` like any run's."""
        drive = self._create(agent, task, budget or SwarmBudget(), principal, swarm_id)
        return self._background(drive)

    async def resume(self, swarm_id: str, *, principal: Principal | None = None,
                     agent: Agent | None = None) -> SwarmResult:
        return await self._reopen(swarm_id, principal, agent).execute()

    def start_resume(self, swarm_id: str, *, principal: Principal | None = None,
                     agent: Agent | None = None) -> RunHandle:
        return self._background(self._reopen(swarm_id, principal, agent))

    def is_swarm(self, run_id: str) -> bool:
        return self.store.is_swarm(run_id)

    # --- creating and reopening ------------------------------------------------------------------

    def _principal(self, principal: Principal | None, agent: Agent) -> Principal | None:
        services = self.runner.services
        if principal is not None or services is None:
            return principal
        if agent.owner:
            try:
                return services.keys.principal_for(agent.owner)
            except NotFoundError:
                pass
        return services.keys.local_principal()

    def _create(self, agent: Agent, task: str, budget: SwarmBudget, principal: Principal | None,
                swarm_id: str | None) -> _Drive:
        if not task.strip():
            raise InvalidRequestError("the task is empty", param="task")
        principal = self._principal(principal, agent)
        if principal is not None:
            agent = replace(agent, owner=principal.identity_id)
        swarm_id = swarm_id or "swarm_" + uuid.uuid4().hex[:20]
        store = self.runner.store
        assert store is not None and self.executor is not None
        step = TaskStep(index=0, task=task, instructions="swarm orchestrator")
        store.create(run_id=swarm_id, agent_config=agent.to_config().model_dump(mode="json"), task=task,
                     owner=agent.owner, model=self.runner.model_name_for(agent), first_step=step, claim=True)
        try:
            self.store.create(swarm_id, budget=budget.to_dict(), executor=self.executor.name)
        except BaseException:
            store.release(swarm_id)
            raise
        self.runner.emit(swarm_id, "status", data={"status": "running", "stop_reason": None})
        return _Drive(self, swarm_id, agent, task, principal, TreeBudget(budget), [step])

    def _reopen(self, swarm_id: str, principal: Principal | None, agent: Agent | None) -> _Drive:
        store = self.runner.store
        assert store is not None
        record = self.store.get(swarm_id)
        run = store.get(swarm_id)
        if run.status == "completed":
            from sovereign.agent.errors import RunNotResumableError

            raise RunNotResumableError(f"swarm '{swarm_id}' already completed")
        if agent is None:
            agent = AgentConfig.model_validate(run.agent_config).build(self.resolve)
        principal = self._principal(principal, agent)
        store.claim(swarm_id)
        tree = TreeBudget(SwarmBudget.from_dict(record.budget), elapsed_before_s=record.wall_s)
        for node in record.nodes:
            if node.status in NODE_TERMINAL:
                tree.spend(node.spent)
            if node.attempts and node.call is None:
                tree.agents += node.attempts
        orchestrator = record.orchestrator
        tree.spend(RunUsage.from_dict(orchestrator["usage"]) if "usage" in orchestrator else RunUsage())
        drive = _Drive(self, swarm_id, agent, run.task, principal, tree, run.steps)
        drive.nodes = {n.node_id: n for n in record.nodes}
        drive.calls.restore(orchestrator)
        return drive

    def _background(self, drive: _Drive) -> RunHandle:
        handle = RunHandle(run_id=drive.swarm_id, task=asyncio.ensure_future(drive.execute_as_run()))
        self.runner.handles[drive.swarm_id] = handle
        handle.task.add_done_callback(lambda _t: self.runner.handles.pop(drive.swarm_id, None))
        return handle


@dataclass
class _Drive:
    """One execution of a swarm (fresh or resumed)."""

    swarm: Swarm
    swarm_id: str
    agent: Agent
    task: str
    principal: Principal | None
    tree: TreeBudget
    steps: list
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    running: dict[str, asyncio.Task] = field(default_factory=dict)
    children: dict[str, asyncio.Task] = field(default_factory=dict)
    interrupted: set[str] = field(default_factory=set)
    """Nodes that were running when an earlier process stopped (their runs are resumed)."""
    """Sub-agents spawned by agents of the tree (``spawn_agent``), by node id."""
    stop_reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    calls: OrchestratorCalls = field(init=False)
    sub_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.calls = OrchestratorCalls(self.swarm.runner, self.swarm_id, self.agent, self.principal, self.tree,
                                       self.steps, on_call=self._save_calls)
        self.sub_name = self._sub_identity()

    def _save_calls(self, state: dict[str, Any]) -> None:
        self.store.save_orchestrator(self.swarm_id, state)

    @property
    def store(self) -> SwarmStore:
        return self.swarm.store

    # --- the whole drive -------------------------------------------------------------------------

    async def execute_as_run(self):
        """``execute`` for a background handle (``RunHandle`` expects a run-like result)."""
        return await self.execute()

    async def execute(self) -> SwarmResult:
        runner = self.swarm.runner
        try:
            assert self.swarm.executor is not None
            await self.swarm.executor.start()
            if not self.nodes:
                try:
                    await self.plan()
                except BudgetExceededError as exc:
                    return self.finish("stopped", f"budget {exc.limit}: {exc.message} (before planning)", None,
                                       partial=True)
            await self.run_nodes()
            await asyncio.gather(*self.children.values(), return_exceptions=True)  # spawned, never awaited
            answer, partial = await self.synthesise()
            status, reason = self.outcome()
            return self.finish(status, reason, answer, partial=partial)
        except asyncio.CancelledError:
            live = [*self.running.values(), *self.children.values()]
            for task in live:
                task.cancel()
            await asyncio.gather(*live, return_exceptions=True)
            self.finish("cancelled", "cancelled", None, partial=True)
            raise
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.finish("failed", f"internal error: {type(exc).__name__}: {exc}", None, partial=True)
            else:
                runner.store.release(self.swarm_id)
            raise

    async def plan(self) -> None:
        tools = [t.name for t in self.agent.tools]
        limit = self.tree.limits.max_agents
        request = plan_request(self.calls.model_name, self.task, self.agent.tools, limit, self.swarm.plan_tokens)
        def check(plan: Plan) -> list[str]:
            repair_plan(plan)
            return plan_problems(plan, self.agent.tools, limit)

        found = await self.calls.structured(request, Plan, check, attempts=self.swarm.max_plan_attempts, what="plan")
        plan = found if isinstance(found, Plan) else single_node_plan(self.task, tools)
        nodes = [NodeRecord(node_id=s.id, task=s.task, instructions=s.instructions, depends_on=list(s.depends_on),
                            seq=i, tools=[s.call.tool] if s.call else self.node_tools(s.tools, tools, 1),
                            call=s.call.model_dump() if s.call else None)
                 for i, s in enumerate(plan.subtasks)]
        self.nodes = {n.node_id: n for n in nodes}
        self.store.save_plan(self.swarm_id, plan.model_dump(), nodes, self.calls.state())
        for node in nodes:
            self.emit(node)

    # --- scheduling ------------------------------------------------------------------------------

    async def run_nodes(self) -> None:
        for node in self.nodes.values():
            if node.status == "running" and node.parent is None:  # interrupted: its run is resumed
                node.status = "pending"
                self.interrupted.add(node.node_id)
        while True:
            self.launch_ready()
            if not self.running:
                break
            await asyncio.wait(list(self.running.values()), return_when=asyncio.FIRST_COMPLETED)
            for node_id in [k for k, t in self.running.items() if t.done()]:
                task = self.running.pop(node_id)
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    def launch_ready(self) -> None:
        """Start every ready node a free slot and the budget allow, at once: their slices are a
        fair share among the nodes starting now, and they are marked running in one write."""
        ready: list[NodeRecord] = []
        pending = [n for n in self.nodes.values() if n.status == "pending" and n.parent is None]
        for node in sorted(pending, key=lambda n: n.seq):
            deps = [self.nodes[d] for d in node.depends_on if d in self.nodes]
            blocked = next((d for d in deps if d.status in NODE_TERMINAL and d.status != "completed"), None)
            if blocked is not None:
                self.end_node(node, "skipped", f"dependency '{blocked.node_id}' {blocked.status}")
            elif all(d.status == "completed" for d in deps):
                ready.append(node)
        starting: list[tuple[NodeRecord, Any]] = []
        for i, node in enumerate(ready):
            free = self.tree.limits.max_concurrency - len(self.running) - len(starting)
            if free <= 0:
                break
            try:
                slice_ = self.tree.take_call(self.calls_counted(node)) if node.call else self.tree.take_slice(
                    min(sum(1 for n in ready[i:] if n.call is None), free), depth=node.depth,
                    max_tokens=self.agent.max_tokens, uses_tools=bool(node.tools))
            except BudgetExceededError as exc:
                if (self.running or starting) and exc.limit not in ("max_agents", "max_depth", "max_wall_s"):
                    break  # the running sub-agents' unspent slices come back when they end
                self.stop_reason = f"budget {exc.limit}: {exc.message}"
                self.end_node(node, "skipped", self.stop_reason)
                continue
            self.mark_started(node)
            starting.append((node, slice_))
        self.store.update_nodes(self.swarm_id, [node for node, _ in starting])
        for node, slice_ in starting:
            self.emit(node)
            self.running[node.node_id] = asyncio.ensure_future(self.run_node(node, slice_, marked=True))

    def calls_counted(self, node: NodeRecord) -> int:
        """Tool calls the run of an interrupted node already counted (0 for a fresh attempt)."""
        if node.node_id not in self.interrupted or node.run_id is None:
            return 0
        try:
            return self.swarm.runner.store.get(node.run_id, with_steps=False).spent.tool_calls
        except RunNotFoundError:
            return 0

    def mark_started(self, node: NodeRecord) -> None:
        """The node runs now: a new attempt (a new run), or its interrupted run continued."""
        if node.node_id in self.interrupted and node.run_id is not None:
            self.interrupted.discard(node.node_id)  # the same run, continued
            node.status = "running"
        else:
            node.status, node.attempts = "running", node.attempts + 1
            node.run_id = f"{self.swarm_id}.{node.node_id}.{node.attempts}"
        node.started_at = node.started_at or time.time()

    async def run_node(self, node: NodeRecord, slice_, *, marked: bool = False) -> NodeOutcome:
        """Drive one node's sub-agent (or a tool node's call) through the executor; a failed one is
        re-planned. ``marked``: already marked running (and stored) by ``launch_ready``."""
        if not marked:
            self.mark_started(node)
            self.store.update_node(self.swarm_id, node)
            self.emit(node)
        assert node.run_id is not None
        results = {d: self.nodes[d].answer or "" for d in node.depends_on if d in self.nodes}
        call = {**node.call, "arguments": substitute(node.call["arguments"], results)} if node.call else None
        job = NodeJob(run_id=node.run_id, task=self.node_task(node), principal=self.principal,
                      config={}, agent=self.node_agent(node, slice_), call=call)
        job.config = job.agent.to_config().model_dump(mode="json")
        self.swarm.delegation.register(node.run_id, self, node)
        assert self.swarm.executor is not None
        try:
            outcome = await self.swarm.executor.run(job)
        except asyncio.CancelledError:
            self.tree.give_back(slice_, RunUsage())
            self.end_node(node, "cancelled", "cancelled")
            raise
        except Exception as exc:  # the executor itself failed (a worker died): the node failed
            outcome = NodeOutcome(node.run_id, "failed", f"executor: {type(exc).__name__}: {exc}", None,
                                  RunUsage().to_dict(), time.time(), time.time())
        spent = RunUsage.from_dict(outcome.spent)
        self.tree.give_back(slice_, spent)
        node.spent = node.spent + spent
        if outcome.status == "failed" and node.attempts <= self.swarm.max_retries:
            await self.replan(node, outcome.stop_reason)
            if node.parent is not None and node.status == "pending":  # a spawned child runs again at once
                return await self.run_child(node)
            return outcome
        status = {"completed": "completed", "failed": "failed"}.get(outcome.status, "stopped")
        node.answer = outcome.answer
        self.end_node(node, status, outcome.stop_reason)
        return outcome

    async def replan(self, node: NodeRecord, reason: str) -> None:
        """Ask the orchestrator for a replacement of a failed node; it goes back to pending
        (the next attempt is a new run). Without budget for it, the node stays failed."""
        parent_tools = self.tools_of(self.nodes.get(node.parent or ""))
        tools = [t for t in self.agent.tools if t.name in parent_tools]
        failed = SubTask(id=node.node_id, task=node.task, instructions=node.instructions, tools=node.tools,
                         depends_on=node.depends_on, call=PlannedCall(**node.call) if node.call else None)
        request = replan_request(self.calls.model_name, self.task, failed, reason, tools, self.swarm.plan_tokens)

        def check(sub: SubTask) -> list[str]:
            sub.depends_on = list(node.depends_on)  # the edges stay as planned (results already flowed)
            return subtask_problems(sub, tools)

        try:
            found = await self.calls.structured(request, SubTask, check, attempts=2, what=f"re-plan {node.node_id}")
        except BudgetExceededError as exc:
            self.stop_reason = f"budget {exc.limit}: {exc.message}"
            found = None
        if not isinstance(found, SubTask):
            self.end_node(node, "failed", reason)
            return
        node.task, node.instructions = found.task, found.instructions
        node.call = found.call.model_dump() if found.call else None
        node.tools = [found.call.tool] if found.call else self.node_tools(found.tools, parent_tools, node.depth)
        node.status, node.stop_reason = "pending", f"re-planned after: {reason}"
        self.store.update_node(self.swarm_id, node)
        self.emit(node)

    def end_node(self, node: NodeRecord, status: str, reason: str | None) -> None:
        node.status, node.stop_reason = status, reason
        if node.started_at is not None:
            node.ended_at = time.time()
        self.store.update_node(self.swarm_id, node)
        self.emit(node)

    # --- what each sub-agent gets ----------------------------------------------------------------

    def node_task(self, node: NodeRecord) -> str:
        """The node's task with the results of what it depends on (the edges)."""
        inputs = [self.nodes[d] for d in node.depends_on if d in self.nodes]
        if not inputs:
            return node.task
        given = "\n".join(f"[{d.node_id}] {(d.answer or '')[:_RESULT_CHARS]}" for d in inputs)
        return f"{node.task}\n\nResults of the sub-tasks this one builds on:\n{given}"

    def node_agent(self, node: NodeRecord, slice_) -> Agent:
        """The sub-agent: the parent's settings, its own instructions, the tools its node names
        (a subset of its parent's: ``node_tools``), the budget slice, the swarm's agent name."""
        from sovereign.swarm.delegate import DELEGATION_TOOLS

        own = [t for t in self.agent.tools if t.name not in DELEGATION_TOOLS]
        tools = [t for t in own if t.name in node.tools]
        instructions = "You are one sub-agent of a swarm; do only your sub-task and answer with its result."
        if node.instructions:
            instructions += "\n" + node.instructions
        if any(name in DELEGATION_TOOLS for name in node.tools):
            tools += self.swarm.delegation.tools()  # it may delegate in turn (in this process)
        return replace(self.agent, name=self.sub_name, instructions=instructions, tools=tools, budget=slice_,
                       verify="off")

    def node_tools(self, wanted: list[str], parent_tools: list[str], depth: int) -> list[str]:
        """The tools a sub-agent at ``depth`` gets: those of ``wanted`` its parent has. The
        delegation pair (``spawn_agent``/``wait_agents``) counts as one: a sub-agent gets both
        when its parent had them, it is named, ``depth`` is below ``max_depth`` and children
        can run in this process (asyncio); else neither."""
        from sovereign.swarm.delegate import DELEGATION_TOOLS

        kept = [t for t in dict.fromkeys(wanted) if t in parent_tools and t not in DELEGATION_TOOLS]
        delegates = (any(t in DELEGATION_TOOLS for t in wanted) and all(t in parent_tools for t in DELEGATION_TOOLS)
                     and depth < self.tree.limits.max_depth and self.swarm.executor_name == "asyncio")
        return kept + list(DELEGATION_TOOLS) if delegates else kept

    def _sub_identity(self) -> str:
        """The agent name (and, inside the OS, the agent identity, owned by the swarm's human
        owner) every sub-agent of this swarm runs as: their spend counts against it and the owner."""
        name = f"{self.swarm_id}.sub"[-64:]
        services = self.swarm.runner.services
        if services is None or self.principal is None or self.principal.agent_id is not None:
            return name
        try:
            services.keys.identity(name)
        except NotFoundError:
            services.keys.create_identity(name, kind="agent", role="operator", owner=self.principal.spend_owner_id,
                                          actor=self.principal.identity_name)
        return name

    # --- delegation (spawn_agent / wait_agents) ---------------------------------------------------

    def tools_of(self, node: NodeRecord | None) -> list[str]:
        """The tool names the agent of ``node`` has (None: the agent at the root)."""
        return list(node.tools) if node is not None else [t.name for t in self.agent.tools]

    def spawn(self, parent: NodeRecord | None, task: str, instructions: str, tools: list[str] | None) -> NodeRecord:
        """A child sub-agent of ``parent`` (None: of the run at the root), started at once, with
        ``tools`` of its parent's (None: all of them)."""
        if not task.strip():
            raise InvalidRequestError("spawn_agent needs a task", param="task")
        owner = parent.node_id if parent is not None else self.swarm_id
        own = self.tools_of(parent)
        if tools is None:
            tools = list(own)
        unknown = [t for t in tools if t not in own]
        if unknown:
            raise InvalidRequestError(f"tools the parent does not have: {', '.join(unknown)} "
                                      f"(available: {', '.join(sorted(own)) or 'none'})", param="tools")
        depth = (parent.depth if parent is not None else 0) + 1
        tools = self.node_tools(tools, own, depth)
        waiting = 1 + sum(1 for n in self.nodes.values() if n.status == "pending")
        slice_ = self.tree.take_slice(waiting, depth=depth, max_tokens=self.agent.max_tokens, uses_tools=bool(tools))
        count = 1 + sum(1 for n in self.nodes.values() if n.parent == owner)
        base = parent.node_id if parent is not None else "d"
        node = NodeRecord(node_id=f"{base}.{count}", task=task, instructions=instructions, tools=list(tools),
                          depends_on=[], parent=owner, depth=depth, seq=len(self.nodes))
        self.nodes[node.node_id] = node
        self.store.add_node(self.swarm_id, node)
        self.emit(node)
        self.children[node.node_id] = asyncio.ensure_future(self.run_node(node, slice_))
        return node

    async def run_child(self, node: NodeRecord) -> NodeOutcome | None:
        """Run a spawned child again (re-planned, or left unfinished by an earlier process)."""
        waiting = 1 + sum(1 for n in self.nodes.values() if n.status == "pending" and n is not node)
        try:
            slice_ = self.tree.take_slice(waiting, depth=node.depth, max_tokens=self.agent.max_tokens,
                                              uses_tools=bool(node.tools))
        except BudgetExceededError as exc:
            self.end_node(node, "skipped", f"budget {exc.limit}: {exc.message}")
            return None
        return await self.run_node(node, slice_)

    async def wait(self, ids: list[str], timeout: float | None) -> list[dict[str, Any]]:
        """The children ``ids`` once they ended (or at ``timeout``): id, status, answer."""
        jobs = []
        for node_id in ids:
            node = self.nodes.get(node_id)
            if node is None:
                raise InvalidRequestError(f"no sub-agent '{node_id}' in this tree", param="agent_ids")
            if node.status not in NODE_TERMINAL and node_id not in self.children:  # after a resume
                if node.status == "running":
                    self.interrupted.add(node_id)
                self.children[node_id] = asyncio.ensure_future(self.run_child(node))
            if node_id in self.children:
                jobs.append(self.children[node_id])
        if jobs:
            await asyncio.wait(jobs, timeout=timeout)
        return [{"id": i, "status": self.nodes[i].status, "answer": self.nodes[i].answer,
                 "stop_reason": self.nodes[i].stop_reason} for i in ids]

    # --- the end ---------------------------------------------------------------------------------

    async def synthesise(self) -> tuple[str | None, bool]:
        planned = [n for n in self.nodes.values() if n.parent is None]
        done = [n for n in planned if n.status == "completed"]
        if len(planned) == 1 and done:
            return done[0].answer, False
        results = "\n\n".join(f"[{n.node_id}] ({n.status}) {n.task}\n{(n.answer or '(no result)')[:_RESULT_CHARS]}"
                              for n in planned)
        carried = [(n.node_id, n.answer or "") for n in done]
        try:
            answer = await self.calls.synthesis(self.task, results, self.swarm.synthesis_tokens)
            if left_out := uncovered(answer, carried):
                answer = await self.calls.synthesis(self.task, results, self.swarm.synthesis_tokens,
                                                    left_out=[f"[{i}]" for i in left_out])
            if left_out := uncovered(answer, carried):
                answer += "\n\nResults the merge left out:\n" + "\n".join(
                    f"- {self.nodes[i].task}: {self.nodes[i].answer}" for i in left_out)
            return answer, len(done) < len(planned)
        except BudgetExceededError as exc:
            self.stop_reason = self.stop_reason or f"budget {exc.limit}: {exc.message}"
            return "The swarm's budget ran out before its results were merged. Results:\n\n" + results, True

    def outcome(self) -> tuple[str, str]:
        statuses = [n.status for n in self.nodes.values()]
        if all(s == "completed" for s in statuses) and self.stop_reason is None:
            return "completed", f"final answer ({len(statuses)} nodes)"
        if self.stop_reason is not None or "stopped" in statuses:
            return "stopped", self.stop_reason or "a sub-agent stopped on its budget"
        failed = [n.node_id for n in self.nodes.values() if n.status == "failed"]
        return "failed", f"sub-agents failed: {', '.join(failed)}"

    def finish(self, status: str, reason: str, answer: str | None, *, partial: bool) -> SwarmResult:
        runner = self.swarm.runner
        store = runner.store
        assert store is not None
        wall = self.tree.elapsed()
        critical = critical_path(list(self.nodes.values()), orchestrator_steps=self.calls.steps,
                                 orchestrator_s=self.calls.seconds, wall_s=wall)
        self.store.set_phase(self.swarm_id, "done" if status == "completed" else status,
                             orchestrator=self.calls.state(), critical=critical, wall_s=wall)
        total = self.calls.usage
        for node in self.nodes.values():
            total = total + node.spent
        total.elapsed_before_s, total.started_at = wall, None
        final = FinalAnswerStep(index=len(self.steps), answer=answer, status=status, stop_reason=reason,
                                partial=partial)
        self.steps.append(final)
        store.append(self.swarm_id, [final], total, also=[lambda conn: store.set_status_in(
            conn, self.swarm_id, status, stop_reason=reason, answer=answer, spent=total)])
        leases.forget(self.swarm_id)
        runner.emit(self.swarm_id, "status", data={"status": status, "stop_reason": reason})
        return SwarmResult(self.swarm_id, status, reason, answer, self.store.get(self.swarm_id).tree())

    def emit(self, node: NodeRecord) -> None:
        self.swarm.runner.emit(self.swarm_id, "node", data=node.to_dict())
