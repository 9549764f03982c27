"""``spawn_agent`` and ``wait_agents``: tools with which any agent delegates to sub-agents.

``spawn_agent`` starts a child at once (non-blocking) and returns its id; ``wait_agents``
returns the children's results once they end. A child is a node of the calling run's tree: a
sub-agent of a swarm gets children one level deeper; an ordinary run that delegates becomes the
root of its own tree (stored like a swarm's, shown by ``runs show`` and the API). Every child
is an ordinary run under the tree's one budget (agents, depth, tokens, money, tool calls, time)
with a subset of its parent's tools.

Delegation runs children in this process (asyncio). Spawning is gated like an outward action by
the injection guard: a task written after untrusted content was read could otherwise hand that
content's instructions to a fresh agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sovereign.agent.agent import AgentConfig, ToolResolver
from sovereign.errors import SovereignError
from sovereign.swarm.budget import SwarmBudget, TreeBudget
from sovereign.tools.base import Effects, Tool, ToolContext, ToolError, tool

if TYPE_CHECKING:
    from sovereign.swarm.orchestrator import Swarm, _Drive
    from sovereign.swarm.store import NodeRecord

__all__ = ["DELEGATION_TOOLS", "Delegation"]

DELEGATION_TOOLS = ("spawn_agent", "wait_agents")

_SPAWN = Effects(reads_untrusted=False, acts_on_world=True)
_WAIT = Effects(reads_untrusted=True, source="tool")


@dataclass
class _WithDelegation:
    """A tool resolver: the delegation tools, then ``base``; ``names()`` lists both (for the
    "unknown tool" error)."""

    own: dict[str, Tool]
    base: ToolResolver | None

    def __call__(self, name: str) -> Tool | None:
        if name in self.own:
            return self.own[name]
        return self.base(name) if self.base is not None else None

    def names(self) -> list[str]:
        listed = getattr(self.base, "names", None)
        return sorted({*self.own, *(listed() if listed is not None else [])})


@dataclass
class Delegation:
    """The delegation tools of one ``Swarm`` (its runner, executor and store); ``budget`` is the
    tree budget of an ordinary run that starts delegating."""

    swarm: Swarm
    budget: SwarmBudget = field(default_factory=SwarmBudget)
    by_run: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    _tools: list[Tool] | None = None

    def register(self, run_id: str, drive: _Drive, node: NodeRecord | None) -> None:
        """Calls from run ``run_id`` spawn children of ``node`` in ``drive``'s tree."""
        self.by_run[run_id] = (drive, node)

    def resolver(self, base: ToolResolver | None = None) -> ToolResolver:
        """``base`` plus the two delegation tools (for agents defined by name in config/API)."""
        return _WithDelegation({t.name: t for t in self.tools()}, base)

    def tools(self) -> list[Tool]:
        if self._tools is None:
            self._tools = [self._spawn_tool(), self._wait_tool()]
        return self._tools

    def _spawn_tool(self) -> Tool:
        @tool(name="spawn_agent", effects=_SPAWN, inline=True)
        def spawn_agent(task: str, ctx: ToolContext, instructions: str = "", tools: list[str] | None = None) -> dict:
            """Start a sub-agent on a sub-task at once (it runs in parallel); returns its id for wait_agents.

            tools: names of your own tools it may use (default: all of them)."""
            try:
                drive, node = self._drive_for(ctx)
                child = drive.spawn(node, task, instructions, None if tools is None else list(tools))
            except SovereignError as exc:
                raise ToolError(exc.message) from exc
            return {"agent_id": child.node_id, "status": child.status}

        return spawn_agent

    def _wait_tool(self) -> Tool:
        @tool(name="wait_agents", effects=_WAIT)
        async def wait_agents(ctx: ToolContext, agent_ids: list[str] | None = None,
                              timeout_s: float | None = None) -> list:
            """Wait for sub-agents you started and return their results (default: all of them)."""
            try:
                drive, node = self._drive_for(ctx)
                owner = node.node_id if node is not None else drive.swarm_id
                ids = agent_ids or [n.node_id for n in drive.nodes.values() if n.parent == owner]
                return await drive.wait(ids, timeout_s)
            except SovereignError as exc:
                raise ToolError(exc.message) from exc

        return wait_agents

    def _drive_for(self, ctx: ToolContext) -> tuple[_Drive, NodeRecord | None]:
        """The tree the calling run belongs to; an ordinary run becomes the root of one."""
        if ctx.run_id is None:
            raise ToolError("spawn_agent works inside an agent run only")
        found = self.by_run.get(ctx.run_id)
        if found is None:
            found = (self._root_drive(ctx.run_id), None)
            self.by_run[ctx.run_id] = found
        return found

    def _root_drive(self, run_id: str) -> _Drive:
        from sovereign.swarm.orchestrator import _Drive

        swarm, runner = self.swarm, self.swarm.runner
        assert runner.store is not None
        record = runner.store.get(run_id, with_steps=False)
        config = AgentConfig.model_validate(record.agent_config)
        agent = config.build(self.resolver(swarm.resolve))
        principal = swarm._principal(None, agent)
        if not swarm.store.is_swarm(run_id):
            swarm.store.create(run_id, budget=self.budget.to_dict(), executor="asyncio", phase="delegating")
        stored = swarm.store.get(run_id)
        tree = TreeBudget(SwarmBudget.from_dict(stored.budget))
        for node in stored.nodes:
            tree.agents += node.attempts
            tree.spend(node.spent)
        drive = _Drive(swarm, run_id, agent, record.task, principal, tree, [])
        drive.nodes = {n.node_id: n for n in stored.nodes}
        return drive

