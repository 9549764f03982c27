"""The merge keeps every sub-agent's result: a merge that drops short results is asked again,
naming them, and what is still missing is appended as found (``swarm/coverage.py``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sovereign.agent import Agent, Runner, RunStore
from sovereign.kernel.messages import ChatRequest
from sovereign.store import Database
from sovereign.swarm import Swarm
from sovereign.swarm.coverage import uncovered
from sovereign.testing.swarm import SwarmScriptModel, lookup_tool


def test_short_results_must_appear_in_the_merge():
    results = [("a", "Paris"), ("b", "Tokyo"), ("c", "The total is 1,250 units.")]
    assert uncovered("Tokyo", results) == ["a", "c"]
    assert uncovered("paris.txt names Paris, tokyo.txt Tokyo; the total is 1250 units", results) == []
    assert uncovered("Paris, Tokyo, total 1,205", results) == ["c"]  # a number must be the same number


def test_a_long_result_may_be_rephrased():
    summary = " ".join(["The report covers revenue, staffing and the plan for the next quarter"] * 2)
    assert uncovered("Revenue is up.", [("a", summary)]) == []


@dataclass
class ForgetfulMerger(SwarmScriptModel):
    """The scripted swarm double, except that its merges keep only the first result for the first
    ``forgetful`` merges."""

    forgetful: int = 1
    merges: list[str] = field(default_factory=list)

    def _merge(self, request: ChatRequest) -> str:
        self.merges.append(request.messages[-1].content or "")
        full = super()._merge(request)
        if len(self.merges) <= self.forgetful:
            return full.splitlines()[1]
        return full


def _run(tmp_path, model):
    runner = Runner(model=model, store=RunStore(Database(tmp_path / "swarm.db")))
    task = "Look these up:\n" + "\n".join(f"- fetch k{i}" for i in range(3))
    return asyncio.run(Swarm(runner).run(Agent(name="boss", tools=[lookup_tool()]), task))


def test_a_merge_that_drops_results_is_asked_again_naming_them(tmp_path):
    model = ForgetfulMerger(forgetful=1)
    result = _run(tmp_path, model)
    assert result.ok
    assert len(model.merges) == 2 and "left out" in model.merges[1]
    ids = [n["id"] for n in result.tree["nodes"]]
    assert all(f"[{i}]" in model.merges[1] for i in ids[1:]) and f"[{ids[0]}]" not in model.merges[1].split("left out")[1]
    assert all(f"value-of-k{i}" in result.answer for i in range(3))


def test_results_still_missing_after_the_second_merge_are_appended(tmp_path):
    model = ForgetfulMerger(forgetful=2)
    result = _run(tmp_path, model)
    assert result.ok and len(model.merges) == 2
    assert "Results the merge left out" in result.answer
    assert all(f"value-of-k{i}" in result.answer for i in range(3))
