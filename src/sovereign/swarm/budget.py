"""One budget for a swarm's whole tree: tokens, cost, wall time, tool calls, number of agents,
depth and concurrency.

Each sub-agent gets a *slice* — an ordinary agent ``Budget`` that its own loop enforces before
every call, at the call's worst case. Slices are held against the tree's limits when they are
handed out and give back what was not spent when the sub-agent ends, so the slices in use
never add up to more than the tree has left: the tree cannot overrun by more than the
estimation error of the calls in flight (prompt sizes are estimated before a call; output,
tool calls, agents and money are hard). The orchestrator's own calls (plan, re-plan,
synthesis) are checked against what is left the same way.

A slice is the tree's room divided among the sub-tasks still waiting (a fair share), capped by
``per_agent`` where it sets a limit, and at least one tool call for a sub-task with tools while
the tree has one. Handing early sub-agents the whole ``per_agent`` cap instead would let the
first few hold the tree's room while the rest wait (500 tool calls at 16 each started only 31
of 64 ready sub-agents). When even a minimal slice does not fit, no sub-agent starts until a
running one gives its slice back; with none running, the waiting sub-tasks are skipped.

A tool node (one direct call, no model: ``swarm/tool_nodes.py``) holds one tool call and no
tokens or money, and is not an agent (``take_call``); it waits and is skipped the same way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sovereign.agent.budget import Budget, RunUsage
from sovereign.agent.errors import BudgetExceededError
from sovereign.errors import InvalidRequestError

__all__ = ["SwarmBudget", "TreeBudget", "parse_swarm_budget"]

_MIN_OUTPUT = 32
"""The least output room a slice must give (a sub-agent with less cannot answer)."""


@dataclass(kw_only=True, slots=True)
class SwarmBudget:
    """Limits of a whole swarm (orchestrator and every sub-agent together); None: unlimited."""

    max_agents: int = 32
    """Sub-agents started over the swarm's life (retries and delegations count)."""
    max_depth: int = 2
    """Levels below the orchestrator: 1 lets only planned sub-agents run, 2 lets them delegate once."""
    max_concurrency: int = 8
    """Sub-agents running at the same moment."""
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_cost_usd: float | None = None
    max_tool_calls: int | None = 500
    max_wall_s: float | None = None
    per_agent: Budget = field(default_factory=lambda: Budget(max_steps=8, max_tool_calls=16))
    """The most one sub-agent may take, whatever the tree has left."""

    def __post_init__(self) -> None:
        for name in ("max_agents", "max_depth", "max_concurrency"):
            if getattr(self, name) < 1:
                raise InvalidRequestError(f"swarm budget {name} must be >= 1", param=name)
        for name in ("max_input_tokens", "max_output_tokens", "max_cost_usd", "max_tool_calls", "max_wall_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidRequestError(f"swarm budget {name} must be >= 0", param=name)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_agent"}
        out["per_agent"] = self.per_agent.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SwarmBudget:
        data = dict(data or {})
        per_agent = Budget.from_dict(data.pop("per_agent", None) or {"max_steps": 8, "max_tool_calls": 16})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidRequestError(f"unknown swarm budget fields: {', '.join(sorted(unknown))}", param="swarm")
        return cls(**data, per_agent=per_agent)


_ALIASES = {"agents": "max_agents", "depth": "max_depth", "concurrency": "max_concurrency",
            "input_tokens": "max_input_tokens", "output_tokens": "max_output_tokens", "tokens": "max_output_tokens",
            "cost": "max_cost_usd", "tool_calls": "max_tool_calls", "tools": "max_tool_calls", "time": "max_wall_s",
            "wall": "max_wall_s"}


def parse_swarm_budget(text: str | None, base: SwarmBudget | None = None) -> SwarmBudget:
    """``agents=16,concurrency=8,depth=2,output_tokens=20000,cost=0.5,tool_calls=200,time=600``."""
    values = (base or SwarmBudget()).to_dict()
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = _ALIASES.get(key.strip(), key.strip())
        if not sep or key not in values or key == "per_agent":
            raise InvalidRequestError(f"bad swarm budget item '{item.strip()}': use key=value with key in "
                                      + ", ".join(sorted(_ALIASES)), param="swarm_budget")
        raw = raw.strip()
        try:
            values[key] = None if raw.lower() in ("none", "off") else (
                float(raw) if key in ("max_cost_usd", "max_wall_s") else int(raw))
        except ValueError:
            raise InvalidRequestError(f"swarm budget {key} must be a number, got '{raw}'", param="swarm_budget") from None
    return SwarmBudget.from_dict(values)


@dataclass(slots=True)
class _Amounts:
    input_tokens: float = 0
    output_tokens: float = 0
    cost_usd: float = 0.0
    tool_calls: float = 0

    def add(self, other: _Amounts, sign: int = 1) -> None:
        self.input_tokens += sign * other.input_tokens
        self.output_tokens += sign * other.output_tokens
        self.cost_usd += sign * other.cost_usd
        self.tool_calls += sign * other.tool_calls


def _of_usage(spent: RunUsage) -> _Amounts:
    return _Amounts(spent.usage.prompt_tokens, spent.usage.completion_tokens, spent.cost_usd, spent.tool_calls)


def _of_budget(budget: Budget) -> _Amounts:
    inf = float("inf")
    return _Amounts(budget.max_input_tokens if budget.max_input_tokens is not None else inf,
                    budget.max_output_tokens if budget.max_output_tokens is not None else inf,
                    budget.max_cost_usd if budget.max_cost_usd is not None else inf,
                    budget.max_tool_calls if budget.max_tool_calls is not None else inf)


@dataclass
class TreeBudget:
    """The swarm's budget at run time: what was spent, what is held by live slices, how many
    agents started. One per swarm execution, rebuilt from stored totals on resume."""

    limits: SwarmBudget
    spent: _Amounts = field(default_factory=_Amounts)
    held: _Amounts = field(default_factory=_Amounts)
    agents: int = 0
    elapsed_before_s: float = 0.0
    started_at: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.elapsed_before_s + time.monotonic() - self.started_at

    def _limit(self, name: str) -> float:
        value = getattr(self.limits, "max_" + name)
        return float("inf") if value is None else float(value)

    def room(self) -> _Amounts:
        """What neither spending nor live slices have taken."""
        out = _Amounts()
        for name in ("input_tokens", "output_tokens", "cost_usd", "tool_calls"):
            setattr(out, name, self._limit(name) - getattr(self.spent, name) - getattr(self.held, name))
        return out

    def time_left(self) -> float | None:
        if self.limits.max_wall_s is None:
            return None
        return max(self.limits.max_wall_s - self.elapsed(), 0.0)

    def check_call(self, *, prompt_tokens: int, max_output_tokens: int) -> None:
        """An orchestrator call at its worst must fit what is left (``BudgetExceededError``)."""
        left = self.time_left()
        if left is not None and left <= 0:
            raise BudgetExceededError("the swarm's time limit is reached", limit="max_wall_s")
        room = self.room()
        if room.output_tokens < max_output_tokens:
            raise BudgetExceededError(f"the swarm's output tokens are spent ({room.output_tokens:.0f} left, "
                                      f"{max_output_tokens} needed)", limit="max_output_tokens")
        if room.input_tokens < prompt_tokens:
            raise BudgetExceededError(f"the swarm's input tokens are spent ({room.input_tokens:.0f} left)",
                                      limit="max_input_tokens")

    def spend(self, spent: RunUsage) -> None:
        """Count usage that held no slice (an orchestrator call)."""
        self.spent.add(_of_usage(spent))

    def check_agent(self, depth: int) -> None:
        """Another sub-agent at ``depth`` may start (agent count, depth, time)."""
        if depth > self.limits.max_depth:
            raise BudgetExceededError(f"depth {depth} is beyond the swarm's max_depth {self.limits.max_depth}",
                                      limit="max_depth")
        if self.agents >= self.limits.max_agents:
            raise BudgetExceededError(f"the swarm's {self.limits.max_agents} agents are all used", limit="max_agents")
        left = self.time_left()
        if left is not None and left <= 0:
            raise BudgetExceededError("the swarm's time limit is reached", limit="max_wall_s")

    def take_slice(self, waiting: int, *, depth: int = 1, max_tokens: int = 512, uses_tools: bool = False) -> Budget:
        """The budget of the next sub-agent (held until ``give_back``); ``BudgetExceededError``
        when the tree cannot afford even a minimal one. ``waiting``: sub-tasks still to start,
        this one included, among which the room is shared; ``uses_tools``: it needs at least one
        tool call to be of use."""
        self.check_agent(depth)
        per = self.limits.per_agent
        cap, room, share, inf = _of_budget(per), self.room(), max(waiting, 1), float("inf")
        piece = _Amounts(*(min(getattr(cap, n), getattr(room, n) / share)
                           for n in ("input_tokens", "output_tokens", "cost_usd", "tool_calls")))
        piece.tool_calls = min(cap.tool_calls, room.tool_calls, max(math.floor(piece.tool_calls), int(uses_tools)))
        need_output = min(_MIN_OUTPUT, max_tokens)
        if piece.output_tokens < need_output:
            piece.output_tokens = min(room.output_tokens, need_output)
            if piece.output_tokens < need_output:
                raise BudgetExceededError("the swarm's output tokens are spent", limit="max_output_tokens")
        if room.cost_usd <= 0:
            raise BudgetExceededError("the swarm's money is spent", limit="max_cost_usd")
        if uses_tools and piece.tool_calls < 1:
            raise BudgetExceededError("the swarm's tool calls are spent", limit="max_tool_calls")
        if room.input_tokens <= 0:
            raise BudgetExceededError("the swarm's input tokens are spent", limit="max_input_tokens")
        left = self.time_left()
        wall = per.max_wall_s if left is None else min(per.max_wall_s or left, left)
        budget = replace(per, max_wall_s=wall,
                         max_input_tokens=None if piece.input_tokens == inf else int(piece.input_tokens),
                         max_output_tokens=None if piece.output_tokens == inf else int(piece.output_tokens),
                         max_cost_usd=None if piece.cost_usd == inf else piece.cost_usd,
                         max_tool_calls=None if piece.tool_calls == inf else int(piece.tool_calls))
        self.held.add(_of_budget_finite(budget))
        self.agents += 1
        return budget

    def take_call(self, counted: int = 0) -> Budget:
        """The budget of a tool node's run: one tool call, held until ``give_back``, within the
        tree's time; ``BudgetExceededError`` when the tree has no tool call or time left.
        ``counted``: calls the node's interrupted run already counted, held too (its resumed
        run counts them again)."""
        left = self.time_left()
        if left is not None and left <= 0:
            raise BudgetExceededError("the swarm's time limit is reached", limit="max_wall_s")
        if self.room().tool_calls < 1 + counted:
            raise BudgetExceededError("the swarm's tool calls are spent", limit="max_tool_calls")
        per = self.limits.per_agent.max_wall_s
        budget = Budget(max_steps=0, max_tool_calls=1 + counted, max_input_tokens=0, max_output_tokens=0,
                        max_cost_usd=0.0, max_wall_s=per if left is None else min(per or left, left))
        self.held.add(_of_budget_finite(budget))
        return budget

    def give_back(self, slice_: Budget, spent: RunUsage) -> None:
        """A sub-agent ended: its slice stops being held and what it spent is counted."""
        self.held.add(_of_budget_finite(slice_), -1)
        self.spent.add(_of_usage(spent))

    def to_dict(self) -> dict[str, Any]:
        s = self.spent
        return {"agents": self.agents, "input_tokens": int(s.input_tokens), "output_tokens": int(s.output_tokens),
                "cost_usd": s.cost_usd, "tool_calls": int(s.tool_calls), "elapsed_s": round(self.elapsed(), 3),
                "limits": self.limits.to_dict()}


def _of_budget_finite(budget: Budget) -> _Amounts:
    """A slice's hold: unlimited dimensions hold nothing (the tree has no limit there either)."""
    out = _of_budget(budget)
    for name in ("input_tokens", "output_tokens", "cost_usd", "tool_calls"):
        if getattr(out, name) == float("inf"):
            setattr(out, name, 0)
    return out
