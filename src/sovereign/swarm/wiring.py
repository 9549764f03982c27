"""A ``Swarm`` for an interface (CLI, API): its executor and budget from ``[swarm]`` in the
config, overridden per request."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovereign.errors import InvalidRequestError
from sovereign.swarm.budget import SwarmBudget
from sovereign.swarm.executors import Executor, RayExecutor, WorkerSpec
from sovereign.swarm.orchestrator import Swarm

if TYPE_CHECKING:
    from sovereign.agent.agent import ToolResolver
    from sovereign.agent.runner import Runner

__all__ = ["swarm_budget", "swarm_for"]

_BUDGET_FIELDS = ("max_agents", "max_depth", "max_concurrency", "max_input_tokens", "max_output_tokens",
                  "max_cost_usd", "max_tool_calls", "max_wall_s")


def swarm_budget(settings: Any, overrides: dict[str, Any] | None = None) -> SwarmBudget:
    """The ``[swarm]`` budget with ``overrides`` (same field names) on top."""
    values = {name: getattr(settings, name) for name in _BUDGET_FIELDS} if settings is not None else {}
    values.update({k: v for k, v in (overrides or {}).items() if k in _BUDGET_FIELDS})
    return SwarmBudget(**values)


def _executor(runner: Runner, settings: Any, name: str, workspace: Path | None) -> Executor | None:
    if name == "asyncio":
        return None
    if name != "ray":
        raise InvalidRequestError(f"executor must be 'asyncio' or 'ray', not '{name}'", param="executor")
    services = runner.services
    if services is None:
        raise InvalidRequestError("the Ray executor needs the OS's home (services)", param="executor")
    spec = WorkerSpec(home=str(services.settings.home), workspace=str(workspace) if workspace else None)
    return RayExecutor(spec, address=settings.ray_address, num_cpus=settings.ray_num_cpus,
                       workers=settings.ray_workers)


def swarm_for(runner: Runner, *, executor: str | None = None, workspace: Path | None = None,
              resolve: ToolResolver | None = None) -> Swarm:
    """A swarm on ``runner`` with the configured (or named) executor."""
    settings = runner.services.settings.swarm if runner.services is not None else None
    name = executor or (settings.executor if settings is not None else "asyncio")
    swarm = Swarm(runner, executor=_executor(runner, settings, name, workspace), resolve=resolve)
    swarm.delegation.budget = swarm_budget(settings)
    return swarm
