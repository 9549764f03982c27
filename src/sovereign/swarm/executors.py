"""Where sub-agents run: in this process on asyncio (the default) or on Ray workers.

Both take a ``NodeJob`` (the sub-agent's run id, task, agent definition with its budget slice,
the principal it runs as, and for a tool node its call) and return a ``NodeOutcome``; both drive it with the same
``drive_node`` on an ordinary ``Runner`` — so every sub-agent is a stored, resumable run on the
governed path wherever it runs, and the same task gives the same tree on both.

Ray (``ray`` from PyPI): ``RayExecutor`` starts a local cluster (``ray.init(num_cpus=...)``) or
joins one (``address=``) and keeps a few async actors (``SwarmWorker``), each holding one
``Runner`` built from a ``WorkerSpec`` (a home to open ``Services`` from, or a database path and
a model for tests and benchmarks). Workers write to the same SQLite database, so on a cluster
the home must be on storage every node shares.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sovereign.agent.agent import Agent, AgentConfig, ToolResolver
from sovereign.agent.errors import RunNotFoundError
from sovereign.errors import SovereignError

if TYPE_CHECKING:
    from sovereign.agent.runner import Runner
    from sovereign.governance.keys import Principal
    from sovereign.tools.base import Tool

__all__ = ["AsyncioExecutor", "Executor", "NodeJob", "NodeOutcome", "RayExecutor", "SwarmWorker", "WorkerSpec",
           "drive_node", "start_ray"]


@dataclass(slots=True)
class NodeJob:
    """One sub-agent to drive. ``agent`` is the in-process shortcut (tool objects included);
    remote workers rebuild it from ``config`` (tools by name). ``call``: a tool node's call
    (``{"tool", "arguments"}``, its references filled), run with no model (``Runner.run_call``)."""

    run_id: str
    task: str
    config: dict[str, Any]
    principal: Principal | None = None
    agent: Agent | None = None
    call: dict[str, Any] | None = None


@dataclass(slots=True)
class NodeOutcome:
    run_id: str
    status: str
    stop_reason: str
    answer: str | None
    spent: dict[str, Any]
    started_at: float
    ended_at: float


class Executor(Protocol):
    name: str

    async def start(self) -> None: ...

    async def run(self, job: NodeJob) -> NodeOutcome: ...

    async def close(self) -> None: ...


def _empty_usage() -> dict[str, Any]:
    return {"prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 0,
            "model_calls": 0, "steps": 0, "tool_calls": 0, "cost_usd": 0.0, "elapsed_s": 0.0}


async def drive_node(runner: Runner, job: NodeJob, resolve: ToolResolver | None = None) -> NodeOutcome:
    """Run the sub-agent of ``job`` to its end: a fresh run, or the stored run of that id
    continued (its finished tool calls are not repeated). A run that cannot start is a failed
    outcome, not an exception."""
    started = time.time()
    agent = job.agent if job.agent is not None else AgentConfig.model_validate(job.config).build(resolve)
    assert runner.store is not None
    try:
        try:
            record = runner.store.get(job.run_id, with_steps=False)
        except RunNotFoundError:
            record = None
        if record is None and job.call is not None:
            result = await runner.run_call(agent, job.call["tool"], job.call["arguments"], task=job.task,
                                           run_id=job.run_id, principal=job.principal)
        elif record is None:
            result = await runner.run(agent, job.task, run_id=job.run_id, principal=job.principal)
        elif record.status == "completed":
            return NodeOutcome(job.run_id, record.status, record.stop_reason or "", record.answer,
                               record.spent.to_dict(), started, time.time())
        else:
            result = await runner.resume(job.run_id, agent=agent, budget=agent.budget, principal=job.principal)
    except SovereignError as exc:
        return NodeOutcome(job.run_id, "failed", f"{type(exc).__name__}: {exc.message}", None, _empty_usage(),
                           started, time.time())
    return NodeOutcome(job.run_id, result.status, result.stop_reason, result.answer, result.spent.to_dict(),
                       started, time.time())


@dataclass
class AsyncioExecutor:
    """Sub-agents as tasks on this process's event loop, on the swarm's own ``Runner``."""

    runner: Runner
    resolve: ToolResolver | None = None
    name: str = "asyncio"

    async def start(self) -> None:
        return None

    async def run(self, job: NodeJob) -> NodeOutcome:
        return await drive_node(self.runner, job, self.resolve)

    async def close(self) -> None:
        return None


@dataclass
class WorkerSpec:
    """How a Ray worker builds its ``Runner``: from a home (``Services``, the OS's models and
    tools, approvals through the queue), or from a database path plus a model and tools
    (tests and benchmarks; they must pickle)."""

    home: str | None = None
    db_path: str | None = None
    model: Any = None
    tools: list[Tool] = field(default_factory=list)
    workspace: str | None = None


class SwarmWorker:
    """A Ray actor holding one ``Runner``; its async ``run`` drives many sub-agents at once."""

    def __init__(self, spec: WorkerSpec) -> None:
        from sovereign.agent.runner import Runner
        from sovereign.agent.store import RunStore

        workspace = Path(spec.workspace) if spec.workspace else None
        self.services = None
        if spec.home is not None:
            from sovereign.agent.agent import builtin_resolver
            from sovereign.config import load_settings
            from sovereign.services import Services
            from sovereign.tools.approvals import ApprovalQueue

            self.services = Services.open(load_settings(Path(spec.home)), progress=False)
            self.runner = Runner(self.services, model=spec.model, approver=ApprovalQueue(self.services.db),
                                 workspace=workspace)
            catalog = builtin_resolver(self.services, workspace)
        else:
            from sovereign.store import Database

            assert spec.db_path is not None, "a WorkerSpec needs a home or a db_path"
            self.runner = Runner(model=spec.model, store=RunStore(Database(spec.db_path)), workspace=workspace)
            catalog = None
        own = {t.name: t for t in spec.tools}
        self.resolve = (lambda name: own.get(name) or (catalog(name) if catalog is not None else None))

    async def run(self, job: NodeJob) -> NodeOutcome:
        return await drive_node(self.runner, job, self.resolve)

    def ping(self) -> int:
        return os.getpid()


def start_ray(**options: Any) -> None:
    """``ray.init`` with a second try: on a busy machine the local raylet can miss Ray's fixed
    30 s registration window ("node timed out during startup")."""
    import ray

    for attempt in (1, 2):
        try:
            ray.init(log_to_driver=False, **options)
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            ray.shutdown()


def _worker_path() -> str:
    """PYTHONPATH for workers: the driver's entries made absolute (a ``src`` layout checkout
    run with ``PYTHONPATH=src`` must import the same code in every worker)."""
    entries = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    here = str(Path(__file__).resolve().parents[2])  # the directory holding the sovereign package
    return os.pathsep.join(dict.fromkeys([here, *entries]))


@dataclass
class RayExecutor:
    """Sub-agents on Ray: ``workers`` async actors, each with its own ``Runner`` (``spec``).

    ``address`` joins a running cluster; without it a local one is started with ``num_cpus``
    (and shut down by ``close``) unless Ray is already up in this process."""

    spec: WorkerSpec
    address: str | None = None
    num_cpus: int = 2
    workers: int = 2
    name: str = "ray"
    _actors: list[Any] = field(default_factory=list)
    _load: list[int] = field(default_factory=list)
    _started_ray: bool = False

    async def start(self) -> None:
        if self._actors:
            return
        import ray

        if not ray.is_initialized():
            if self.address is not None:  # workers elsewhere import what this driver imports
                start_ray(address=self.address, runtime_env={"env_vars": {"PYTHONPATH": _worker_path()}})
            else:  # local workers inherit this process's environment and working directory
                start_ray(num_cpus=self.num_cpus, include_dashboard=False)
            self._started_ray = True
        actor = ray.remote(num_cpus=0, max_concurrency=1000)(SwarmWorker)
        self._actors = [actor.remote(self.spec) for _ in range(max(self.workers, 1))]
        self._load = [0] * len(self._actors)
        await asyncio.gather(*(a.ping.remote() for a in self._actors))

    async def run(self, job: NodeJob) -> NodeOutcome:
        await self.start()
        index = min(range(len(self._actors)), key=self._load.__getitem__)
        self._load[index] += 1
        remote = NodeJob(run_id=job.run_id, task=job.task, config=job.config, principal=job.principal, call=job.call)
        try:
            return await self._actors[index].run.remote(remote)
        finally:
            self._load[index] -= 1

    async def close(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors, self._load = [], []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
