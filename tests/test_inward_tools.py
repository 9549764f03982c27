"""Calls of ``inward`` tools (inline, synchronous, touching nothing outside the run) run without a
commit before them: the turn that asked for them is stored with their results, one commit a turn.
Every other tool's call is still stored before it runs, and governed runs still ledger and audit
every model and tool call, with a chain that verifies."""

from __future__ import annotations

import asyncio
import json

import pytest

from sovereign.agent import Agent, Budget, LoopPolicy, Runner, RunStore
from sovereign.agent.steps import ModelCallStep, ToolCallStep
from sovereign.config import load_settings
from sovereign.governance.keys import Scopes
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.services import Services
from sovereign.store import Database
from sovereign.testing import ScriptedModel, text_response, tool_response
from sovereign.tools import tool
from sovereign.tools.base import PURE, Effects


def _tools(store: RunStore, seen: dict[str, list[str]]):
    """Tools that record, as they run, the kinds of the steps stored so far."""

    def stored() -> list[str]:
        return [type(s).__name__ for s in store.steps("run_inward")]

    @tool(inline=True, effects=PURE)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        seen.setdefault("add", []).extend(stored())
        return a + b

    @tool(inline=True, effects=Effects(acts_on_world=True))
    def mark(a: int) -> int:
        """Act on the world (inline)."""
        seen.setdefault("mark", []).extend(stored())
        return a

    @tool(effects=PURE)
    def slow_add(a: int, b: int) -> int:
        """Add in a worker thread."""
        seen.setdefault("slow_add", []).extend(stored())
        return a + b

    return add, mark, slow_add


def test_inward_is_inline_synchronous_and_touches_nothing_outside():
    store = RunStore(Database(":memory:"))
    add, mark, slow_add = _tools(store, {})
    assert add.inward
    assert not mark.inward  # acts on the world
    assert not slow_add.inward  # runs in a worker thread

    @tool(inline=True, needs_approval=True)
    def ask(a: int) -> int:
        """Needs a person."""
        return a

    assert not ask.inward


def test_an_inward_call_runs_before_its_turn_is_stored_and_other_calls_after():
    db = Database(":memory:")
    store = RunStore(db)
    seen: dict[str, list[str]] = {}
    tools = _tools(store, seen)
    script = ScriptedModel([
        tool_response(("add", '{"a": 1, "b": 2}')),
        tool_response(("mark", '{"a": 3}')),
        tool_response(("slow_add", '{"a": 3, "b": 4}')),
        text_response("7"),
    ])
    runner = Runner(model=script, store=store)
    result = asyncio.run(runner.run(Agent(name="a", tools=list(tools)), "add", run_id="run_inward"))
    assert result.ok and result.answer == "7"
    assert "ModelCallStep" not in seen["add"] and "ToolCallStep" not in seen["add"]
    assert seen["mark"][-2:] == ["ModelCallStep", "ToolCallStep"]  # stored before it acted
    assert seen["slow_add"][-2:] == ["ModelCallStep", "ToolCallStep"]
    stored = store.steps("run_inward")
    assert [s.index for s in stored] == list(range(len(stored)))  # nothing lost: every step, in order
    assert [type(s) for s in stored] == [type(s) for s in result.steps]
    assert sum(isinstance(s, ModelCallStep) for s in stored) == 4
    assert sum(isinstance(s, ToolCallStep) for s in stored) == 3


def test_a_governed_run_of_inward_calls_commits_once_a_turn_and_ledgers_and_audits_everything(tmp_path):
    services = Services.open(load_settings(tmp_path / "home"))
    try:
        steps = 6
        script = ScriptedModel([tool_response(("add", json.dumps({"a": i, "b": 1}))) for i in range(steps)]
                               + [text_response("done")])
        services.register(ModelSpec(name="scripted", backend="in_process", prices=PriceSheet(input=0.1, output=0.2)),
                          script)
        services.keys.create_identity("user", role="operator")
        _, secret = services.keys.create_key("user", scopes=Scopes(tools=["add"], max_spend_usd=10.0))
        principal = services.keys.authenticate(secret)
        services.spend.set_cap("owner", principal.identity_id, "day", max_usd=10.0)

        @tool(inline=True, effects=PURE)
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        runner = Runner(services, model=script)
        commits = 0
        transaction = services.db.transaction

        def counted():
            nonlocal commits
            commits += 1
            return transaction()

        services.db.transaction = counted  # type: ignore[method-assign]
        agent = Agent(name="bench", model="scripted", tools=[add], budget=Budget(max_steps=20),
                      loop=LoopPolicy(stale_steps=0))
        result = asyncio.run(runner.run(agent, "add things", principal=principal))
        del services.db.transaction
        assert result.ok and result.spent.tool_calls == steps
        # the run's creation, one commit a turn (the first also grants the lease) and the final
        # one (with the lease's close); before, each tool turn took two and the close its own
        assert commits == 1 + (steps + 1) + 1, commits
        assert services.db.query("SELECT COUNT(*) AS n FROM spend_reservations WHERE status = 'open'")[0]["n"] == 0
        ledger = services.db.query("SELECT COUNT(*) AS n FROM usage_ledger WHERE run_id = ?", (result.run_id,))
        assert ledger[0]["n"] == steps + 1
        model_calls = [e for e in services.audit.entries(kind="model.call") if e.data.get("run_id") == result.run_id]
        tool_calls = [e for e in services.audit.entries(kind="tool.call") if e.data.get("run_id") == result.run_id]
        assert len(model_calls) == steps + 1 and len(tool_calls) == steps
        assert all(e.data["executed"] and e.data["ok"] for e in tool_calls)
        assert services.audit.verify().ok
        spend = services.spend.status(owner_id=principal.identity_id)
        total = services.db.query("SELECT SUM(cost_usd) AS usd FROM usage_ledger")[0]["usd"]
        assert spend.total_usd == pytest.approx(total) and total > 0  # settled spend = the ledger
    finally:
        services.close()


def test_a_turn_of_several_inward_calls_is_stored_by_one_commit(tmp_path):
    db = Database(tmp_path / "runs.db")
    store = RunStore(db)
    seen: dict[str, list[str]] = {}
    add, mark, _ = _tools(store, seen)
    script = ScriptedModel([
        tool_response(("add", '{"a": 1, "b": 2}'), ("add", '{"a": 3, "b": 4}'), ("add", '{"a": 5, "b": 6}')),
        tool_response(("add", '{"a": 7, "b": 8}'), ("mark", '{"a": 1}')),
        text_response("done"),
    ])
    commits = []
    append = store.append
    store.append = lambda run_id, steps, *a, **k: commits.append([type(s).__name__ for s in steps]) or append(
        run_id, steps, *a, **k)  # type: ignore[method-assign]
    result = asyncio.run(Runner(model=script, store=store).run(Agent(name="a", tools=[add, mark]), "add",
                                                              run_id="run_inward"))
    assert result.ok and [s.content for s in result.steps if type(s).__name__ == "ToolResultStep"][:3] == ["3", "7", "11"]
    # the first turn: stored with its three calls and results, before the second model call
    assert commits[0] == ["ModelCallStep"] + ["ToolCallStep"] * 3 + ["ToolResultStep"] * 3
    # a turn with a call that acts on the world is stored before its calls run, as always
    assert commits[1] == ["ModelCallStep", "ToolCallStep", "ToolCallStep"]
    assert [type(s) for s in store.steps("run_inward")] == [type(s) for s in result.steps]
