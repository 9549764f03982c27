"""The orchestrator's own model calls (plan, re-plan, synthesis): each checked against the tree's
budget at its worst case, made on the governed path as the swarm's principal, accounted, and
stored as a step of the swarm's run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sovereign.agent.budget import RunUsage
from sovereign.agent.compaction import estimate_tokens
from sovereign.agent.steps import ModelCallStep, NoticeStep
from sovereign.finops.ledger import price
from sovereign.governance.governed_model import GovernedModel
from sovereign.governance.governor import CallScope
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, Usage
from sovereign.swarm.plan import ask_structured

if TYPE_CHECKING:
    from sovereign.agent.agent import Agent
    from sovereign.agent.runner import Runner
    from sovereign.governance.keys import Principal
    from sovereign.kernel.protocol import Model
    from sovereign.swarm.budget import TreeBudget

__all__ = ["OrchestratorCalls"]

_MIN_OUTPUT = 64
"""The least room an orchestrator call is made with (a shorter plan or merge is not worth it)."""


@dataclass
class OrchestratorCalls:
    runner: Runner
    swarm_id: str
    agent: Agent
    principal: Principal | None
    tree: TreeBudget
    stored: list
    usage: RunUsage = field(default_factory=RunUsage)
    steps: int = 0
    seconds: float = 0.0
    on_call: Callable[[dict[str, Any]], None] | None = None
    """Called with ``state()`` after each call (the swarm stores it, for a resume)."""
    _model: Model | None = None

    @property
    def model_name(self) -> str:
        return self.runner.model_name_for(self.agent)

    async def model(self) -> Model:
        if self._model is None:
            inner = await self.runner.resolve_model(self.model_name)
            governor = self.runner.governor
            if governor is not None and self.principal is not None:
                scope = CallScope(self.principal, agent_id=self.principal.agent_id, run_id=self.swarm_id)
                inner = GovernedModel(inner, governor, scope)
            self._model = inner
        return self._model

    async def call(self, request: ChatRequest, what: str) -> ChatResponse:
        """One orchestrator call: the tree's budget first (``BudgetExceededError``), then the
        governed call; its usage counts against the tree and it is stored as a step."""
        model = await self.model()
        counter = self.runner.token_counter(model)
        wanted = request.max_tokens or self.agent.max_tokens
        room = self.tree.room().output_tokens
        if room < wanted:  # a shorter answer rather than none, while a useful one fits
            request = replace(request, max_tokens=max(int(room), 0))
        self.tree.check_call(prompt_tokens=estimate_tokens(request.messages, [], counter),
                             max_output_tokens=max(request.max_tokens or wanted, min(_MIN_OUTPUT, wanted)))
        started = time.perf_counter()
        response = await model.complete(request)
        took = time.perf_counter() - started
        usage = response.usage if response.usage.requests else Usage(
            prompt_tokens=response.usage.prompt_tokens, completion_tokens=response.usage.completion_tokens,
            cached_tokens=response.usage.cached_tokens, requests=1)
        cost = price(usage, self.runner.prices_for(request.model))
        spent = RunUsage(usage=usage, steps=1, cost_usd=cost)
        self.tree.spend(spent)
        self.usage = self.usage + spent
        self.usage.elapsed_before_s = 0.0
        self.steps += 1
        self.seconds += took
        step = ModelCallStep(index=len(self.stored), model=request.model,
                             content=response.message.content, usage=usage, cost_usd=cost,
                             duration_ms=round(took * 1000, 3))
        self.stored.append(step)
        note = NoticeStep(index=len(self.stored), text=what, reason="swarm")
        self.stored.append(note)
        assert self.runner.store is not None
        self.runner.store.append(self.swarm_id, [step, note])
        if self.on_call is not None:
            self.on_call(self.state())
        for s in (step, note):
            self.runner.emit(self.swarm_id, "step", step=s)
        return response

    async def structured(self, request: ChatRequest, kind: type[BaseModel],
                         check: Callable[[Any], list[str]], *, attempts: int, what: str) -> BaseModel | None:
        async def ask(req: ChatRequest) -> ChatResponse:
            return await self.call(req, what)

        outcome = await ask_structured(ask, request, kind, check, attempts=attempts)
        return outcome.value

    async def synthesis(self, task: str, results: str, max_tokens: int, *, left_out: Sequence[str] = ()) -> str:
        """The merged answer; ``left_out`` names results an earlier merge dropped, to be kept this time."""
        system = ("You are the orchestrator of a swarm of agents. Sub-agents worked on parts of the user's "
                  "task; merge their results into one complete answer to the task. Use only their results.")
        user = f"Task: {task}\n\nResults of the sub-agents:\n\n{results}"
        if left_out:
            user += (f"\n\nYour answer must include the result of every sub-agent. A first merge left out "
                     f"{', '.join(left_out)}: include them.")
        request = ChatRequest(model=self.model_name, messages=[Message(role="system", content=system),
                                                               Message(role="user", content=user)],
                              max_tokens=max_tokens, temperature=0.0)
        response = await self.call(request, "synthesis")
        return (response.message.content or "").strip()

    def state(self) -> dict[str, Any]:
        return {"usage": self.usage.to_dict(), "steps": self.steps, "seconds": round(self.seconds, 3)}

    def restore(self, data: dict[str, Any]) -> None:
        if "usage" in data:
            self.usage = RunUsage.from_dict(data["usage"])
            self.usage.elapsed_before_s = 0.0
        self.steps = int(data.get("steps", 0))
        self.seconds = float(data.get("seconds", 0.0))
