"""The swarm side of ``/v1/runs``: ``POST /v1/runs`` with ``swarm`` runs the task as a swarm,
``GET /v1/runs/{id}`` adds the tree (nodes with status, tokens, cost, time; the critical path),
the events stream adds one ``node`` event per node change, and resume continues a swarm."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from sovereign.agent import Runner
from sovereign.agent.agent import ToolResolver, builtin_resolver
from sovereign.swarm import Swarm, SwarmStore
from sovereign.swarm.wiring import swarm_budget, swarm_for

__all__ = ["SwarmOptions", "node_changes", "resolver", "swarm_of", "swarm_tree"]


class SwarmOptions(BaseModel):
    """``swarm`` in ``POST /v1/runs``: the tree's budget and executor (unset: ``[swarm]`` in config)."""

    model_config = ConfigDict(extra="forbid")

    executor: Literal["asyncio", "ray"] | None = None
    max_agents: int | None = Field(default=None, ge=1, le=1000)
    max_depth: int | None = Field(default=None, ge=1, le=8)
    max_concurrency: int | None = Field(default=None, ge=1, le=1000)
    max_input_tokens: int | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_wall_s: float | None = Field(default=None, ge=0)

    def budget(self, settings: Any):
        return swarm_budget(settings, self.model_dump(exclude_none=True, exclude={"executor"}))


def swarm_of(request: Request, runner: Runner, executor: str | None = None) -> Swarm:
    """The app's swarm on ``runner`` for ``executor`` (one per executor, made on first use)."""
    state = request.app.state
    swarms = getattr(state, "agent_swarms", None)
    if swarms is None:
        swarms = state.agent_swarms = {}
    services = state.services
    name = executor or services.settings.swarm.executor
    if name not in swarms:
        swarms[name] = swarm_for(runner, executor=name, resolve=builtin_resolver(services))
    return swarms[name]


def resolver(request: Request, runner: Runner) -> ToolResolver:
    """Built-in tools plus ``spawn_agent`` / ``wait_agents`` (an agent whose definition lists them may delegate)."""
    return swarm_of(request, runner).delegation.resolver(builtin_resolver(request.app.state.services))


def swarm_tree(runner: Runner, run_id: str) -> dict[str, Any] | None:
    assert runner.store is not None
    store = SwarmStore(runner.store.db)
    return store.get(run_id).tree() if store.is_swarm(run_id) else None


def is_resumable_swarm(runner: Runner, run_id: str) -> bool:
    """A swarm (not an ordinary run that delegated: that one resumes as a run)."""
    assert runner.store is not None
    store = SwarmStore(runner.store.db)
    return store.is_swarm(run_id) and store.get(run_id).phase != "delegating"


def node_changes(runner: Runner, run_id: str, seen: dict[str, tuple]) -> list[dict[str, Any]]:
    """The nodes of ``run_id``'s tree that changed since ``seen`` (updated in place)."""
    assert runner.store is not None
    store = SwarmStore(runner.store.db)
    if not store.is_swarm(run_id):
        return []
    changed = []
    for node in store.nodes(run_id):
        key = (node.status, node.attempts, node.run_id)
        if seen.get(node.node_id) != key:
            seen[node.node_id] = key
            changed.append(node.to_dict())
    return changed
