"""Swarms on the asyncio executor with the scripted swarm double (``sovereign.testing.swarm``,
a deterministic stand-in for the model): fan-out in parallel, results along edges, structured
plans re-asked, one budget for the tree (no overrun mid fan-out), a failed node re-planned,
delegation with spawn_agent / wait_agents, the stored tree and its critical path."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, ToolCall
from sovereign.store import Database
from sovereign.swarm import Swarm, SwarmBudget, SwarmStore
from sovereign.testing import FunctionModel, text_response
from sovereign.testing.swarm import SwarmScriptModel, lookup_tool


def _swarm(tmp_path, model, **kwargs) -> tuple[Swarm, Runner]:
    runner = Runner(model=model, store=RunStore(Database(tmp_path / "swarm.db")))
    return Swarm(runner, **kwargs), runner


def _task(n: int, *extra: str) -> str:
    return "Look these up:\n" + "\n".join([f"- fetch k{i}" for i in range(n)] + [f"- {e}" for e in extra])


def _agent(latency: float = 0.0) -> Agent:
    return Agent(name="boss", tools=[lookup_tool(latency=latency)])


def test_fan_out_runs_in_parallel_and_the_tree_is_stored(tmp_path):
    swarm, runner = _swarm(tmp_path, SwarmScriptModel(latency=0.05))
    started = time.perf_counter()
    result = asyncio.run(swarm.run(_agent(latency=0.05), _task(8)))
    took = time.perf_counter() - started
    assert result.ok, result.stop_reason
    assert result.answer.splitlines()[1:] == [f"fetch k{i} => value-of-k{i}" for i in range(8)]
    # 8 sub-agents of 3 sequential waits each (model, tool, model) = 1.2 s one after the other
    assert took < 0.9
    nodes = result.tree["nodes"]
    assert [n["status"] for n in nodes] == ["completed"] * 8
    assert all(n["steps"] == 2 and n["tool_calls"] == 1 and n["prompt_tokens"] > 0 for n in nodes)
    critical = result.critical
    assert critical["critical_steps"] == 2 + 2  # plan + synthesis, and the slowest stage's two turns
    assert critical["total_steps"] == 2 + 16 and critical["speedup"] > 2
    # every sub-agent is a stored run of its own, and the swarm is a run with the tree's totals
    run = runner.store.get(result.swarm_id)
    assert run.status == "completed" and run.spent.tool_calls == 8 and run.spent.steps == 18
    assert [runner.store.get(n["run_id"]).status for n in nodes] == ["completed"] * 8
    assert SwarmStore(runner.store.db).get(result.swarm_id).tree()["nodes"] == nodes


def test_results_travel_along_the_edges(tmp_path):
    plan = {"subtasks": [
        {"id": "a", "task": "fetch alpha", "tools": ["lookup"], "depends_on": []},
        {"id": "b", "task": "fetch beta", "tools": ["lookup"], "depends_on": []},
        {"id": "c", "task": "combine", "tools": [], "depends_on": ["a", "b"]},
    ]}
    swarm, runner = _swarm(tmp_path, SwarmScriptModel(plan=plan))
    result = asyncio.run(swarm.run(_agent(), "alpha and beta, combined"))
    assert result.ok
    c = next(n for n in result.tree["nodes"] if n["id"] == "c")
    task = runner.store.get(c["run_id"]).task
    assert "[a] fetch alpha => value-of-alpha" in task and "[b] fetch beta => value-of-beta" in task
    assert result.critical["critical_path"][-1] == "c" and len(result.critical["critical_path"]) == 2
    # c got exactly the tools its node names: none
    assert c["tool_calls"] == 0


def test_a_plan_that_does_not_parse_is_asked_again_then_falls_back(tmp_path):
    model = SwarmScriptModel(bad_plans=1)
    swarm, runner = _swarm(tmp_path, model)
    result = asyncio.run(swarm.run(_agent(), _task(2)))
    assert result.ok and len(result.tree["nodes"]) == 2
    steps = runner.store.get(result.swarm_id).steps
    plans = [s for s in steps if s.kind == "notice" and s.text == "plan"]
    assert len(plans) == 2  # one refused, one kept

    swarm, _ = _swarm(tmp_path / "b", SwarmScriptModel(bad_plans=9))
    result = asyncio.run(swarm.run(_agent(), _task(2)))
    assert [n["id"] for n in result.tree["nodes"]] == ["task"]  # the whole task for one sub-agent


def test_dependencies_on_ids_the_plan_lacks_are_dropped(tmp_path):
    plan = {"subtasks": [{"id": "a", "task": "fetch x", "tools": ["lookup"], "depends_on": ["file_name", "a"]},
                         {"id": "b", "task": "combine", "tools": [], "depends_on": ["a"]}]}
    swarm, _ = _swarm(tmp_path, SwarmScriptModel(plan=plan))
    result = asyncio.run(swarm.run(_agent(), "x"))
    assert [(n["id"], n["depends_on"], n["status"]) for n in result.tree["nodes"]] == [
        ("a", [], "completed"), ("b", ["a"], "completed")]


def test_a_plan_naming_tools_the_parent_lacks_is_refused(tmp_path):
    plan = {"subtasks": [{"id": "a", "task": "fetch x", "tools": ["shell"], "depends_on": []}]}
    swarm, runner = _swarm(tmp_path, SwarmScriptModel(plan=plan))
    result = asyncio.run(swarm.run(_agent(), "x"))
    assert [n["id"] for n in result.tree["nodes"]] == ["task"]
    assert result.tree["nodes"][0]["tools"] == ["lookup"]


def test_budget_exhausted_in_the_middle_of_a_fan_out_is_never_overrun(tmp_path):
    limit_out, limit_tools = 90, 5
    budget = SwarmBudget(max_output_tokens=limit_out, max_tool_calls=limit_tools, max_concurrency=4,
                         per_agent=Budget(max_steps=4, max_tool_calls=1, max_output_tokens=20))
    swarm, runner = _swarm(tmp_path, SwarmScriptModel())
    swarm.plan_tokens = 64
    agent = _agent()
    agent.max_tokens = 8
    result = asyncio.run(swarm.run(agent, _task(12), budget=budget))
    assert result.status == "stopped" and "budget" in result.stop_reason
    run = runner.store.get(result.swarm_id)
    assert run.spent.usage.completion_tokens <= limit_out
    assert run.spent.tool_calls <= limit_tools
    statuses = [n["status"] for n in result.tree["nodes"]]
    assert "completed" in statuses and "skipped" in statuses
    # what the tree reports is what the stored runs spent, summed
    runs = [runner.store.get(n["run_id"]) for n in result.tree["nodes"] if n["run_id"]]
    assert sum(r.spent.tool_calls for r in runs) == run.spent.tool_calls


def test_agent_count_and_concurrency_caps(tmp_path):
    model = SwarmScriptModel(latency=0.02)
    live = {"now": 0, "most": 0}
    inner = lookup_tool(latency=0.03)

    async def counting(key: str) -> str:
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        try:
            return await inner.invoke({"key": key})
        finally:
            live["now"] -= 1

    inner_tool = lookup_tool()
    inner_tool.function = counting
    swarm, _ = _swarm(tmp_path, model)
    result = asyncio.run(swarm.run(Agent(name="boss", tools=[inner_tool]), _task(9),
                                   budget=SwarmBudget(max_agents=9, max_concurrency=3)))
    assert [n["status"] for n in result.tree["nodes"]] == ["completed"] * 9
    assert live["most"] == 3

    # a plan with more sub-tasks than the tree may have agents is refused (then: one node)
    swarm, runner = _swarm(tmp_path / "b", SwarmScriptModel())
    result = asyncio.run(swarm.run(_agent(), _task(9), budget=SwarmBudget(max_agents=6)))
    assert [n["id"] for n in result.tree["nodes"]] == ["task"]
    plans = [s for s in runner.store.get(result.swarm_id).steps if s.kind == "notice"]
    assert len(plans) == 3


def test_every_ready_node_starts_at_once_with_a_fair_share_of_the_tree(tmp_path):
    # 40 ready nodes, 500 tool calls for the tree and 16 per agent: handing each the whole
    # per-agent cap let the first 31 hold the tree's room while the rest waited
    arrived: list[str] = []
    waited_in_vain: list[str] = []
    everyone = asyncio.Event()

    async def barrier(key: str) -> str:  # returns once all 40 sub-agents are in their tool call
        arrived.append(key)
        if len(arrived) == 40:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), timeout=5)
        except TimeoutError:
            waited_in_vain.append(key)
        return f"value-of-{key}"

    tool = lookup_tool()
    tool.function = barrier
    swarm, runner = _swarm(tmp_path, SwarmScriptModel())
    result = asyncio.run(swarm.run(Agent(name="boss", tools=[tool]), _task(40),
                                   budget=SwarmBudget(max_agents=40, max_concurrency=40, max_tool_calls=500)))
    assert result.ok, result.stop_reason
    assert everyone.is_set() and not waited_in_vain  # all 40 were running at the same moment
    slices = [runner.store.get(n["run_id"]).agent_config["budget"]["max_tool_calls"] for n in result.tree["nodes"]]
    assert all(12 <= x <= 16 for x in slices) and sum(slices) <= 500  # shares of 500 / 40, under 16 each


def test_no_agent_starts_past_the_agent_cap(tmp_path):
    # two planned nodes and a cap of two agents: the failed node's retry is not started
    swarm, _ = _swarm(tmp_path, SwarmScriptModel())
    result = asyncio.run(swarm.run(_agent(), _task(1, "fetch FAIL k9"), budget=SwarmBudget(max_agents=2)))
    assert [(n["status"], n["attempts"]) for n in result.tree["nodes"]] == [("completed", 1), ("skipped", 1)]
    assert result.status == "stopped" and "max_agents" in result.stop_reason


def test_a_failing_node_is_replanned_and_retried(tmp_path):
    swarm, runner = _swarm(tmp_path, SwarmScriptModel())
    result = asyncio.run(swarm.run(_agent(), _task(2, "fetch FAIL k9")))
    assert result.ok, result.stop_reason
    node = result.tree["nodes"][2]
    assert node["attempts"] == 2 and node["task"] == "fetch k9" and node["status"] == "completed"
    assert node["answer"] == "fetch k9 => value-of-k9"
    first = runner.store.get(node["run_id"].rsplit(".", 1)[0] + ".1")
    assert first.status == "failed" and "scripted failure" in first.stop_reason
    assert any(s.kind == "notice" and s.text == "re-plan n3" for s in runner.store.get(result.swarm_id).steps)


def test_a_node_that_keeps_failing_fails_the_swarm_and_skips_its_dependants(tmp_path):
    plan = {"subtasks": [
        {"id": "a", "task": "fetch FAIL FAIL", "tools": ["lookup"], "depends_on": []},
        {"id": "b", "task": "fetch b", "tools": ["lookup"], "depends_on": ["a"]},
    ]}

    class Stubborn(SwarmScriptModel):
        def _replan(self, request):  # re-plans the same failing task
            return orjson.dumps({"id": "a", "task": "fetch FAIL again", "tools": ["lookup"],
                                 "depends_on": []}).decode()

    swarm, _ = _swarm(tmp_path, Stubborn(plan=plan))
    result = asyncio.run(swarm.run(_agent(), "two steps"))
    assert result.status == "failed" and "a" in result.stop_reason
    assert [(n["status"], n["attempts"]) for n in result.tree["nodes"]] == [("failed", 2), ("skipped", 0)]
    assert result.answer  # merged from what there is


def _delegating_model(child_tools: list[str] | None = ["lookup"]) -> FunctionModel:  # noqa: B006 (never mutated)
    """The parent spawns two children (with ``child_tools``; None: spawn_agent's default, all of
    the parent's), waits for them, then answers with their results; the children behave like the
    swarm double's sub-agents."""
    child = SwarmScriptModel()
    given = "" if child_tools is None else f', "tools": {orjson.dumps(child_tools).decode()}'

    def answer(request: ChatRequest) -> ChatResponse:
        task = next(m.content for m in request.messages if m.role == "user")
        if not task.startswith("delegate"):
            return child._agent_turn(request)
        results = [m.content for m in request.messages if m.role == "tool"]
        if not results:
            return ChatResponse(model="d", message=Message(role="assistant", tool_calls=[
                ToolCall(name="spawn_agent", arguments='{"task": "fetch a"' + given + "}"),
                ToolCall(name="spawn_agent", arguments='{"task": "fetch b"' + given + "}")]),
                finish_reason="tool_calls")
        if len(results) == 2:
            return ChatResponse(model="d", message=Message(role="assistant", tool_calls=[
                ToolCall(name="wait_agents", arguments="{}")]), finish_reason="tool_calls")
        return text_response("children said: " + results[-1])

    return FunctionModel(answer)


def _delegation(tmp_path) -> tuple[Swarm, Runner, Agent]:
    runner = Runner(model=_delegating_model(), store=RunStore(Database(tmp_path / "d.db")))
    lookup = lookup_tool()
    swarm = Swarm(runner, resolve=lambda name: lookup if name == "lookup" else None)
    return swarm, runner, Agent(name="lead", tools=[lookup, *swarm.delegation.tools()])


def test_any_agent_can_delegate_with_spawn_and_wait(tmp_path):
    swarm, runner, agent = _delegation(tmp_path)
    result = asyncio.run(runner.run(agent, "delegate two lookups"))
    assert result.ok, result.stop_reason
    assert "fetch a => value-of-a" in result.answer and "fetch b => value-of-b" in result.answer
    tree = swarm.store.get(result.run_id).tree()
    assert [(n["id"], n["parent"], n["depth"], n["status"]) for n in tree["nodes"]] == [
        ("d.1", result.run_id, 1, "completed"), ("d.2", result.run_id, 1, "completed")]
    assert tree["phase"] == "delegating"


def test_spawn_past_the_tree_caps_is_refused(tmp_path):
    swarm, runner, agent = _delegation(tmp_path)
    swarm.delegation.budget = SwarmBudget(max_depth=1, max_agents=1)
    result = asyncio.run(runner.run(agent, "delegate two lookups"))
    refusals = [s for s in result.steps if s.kind == "tool_result" and not s.ok]
    assert len(refusals) == 1 and "agents are all used" in refusals[0].content
    assert len(swarm.store.get(result.run_id).nodes) == 1


def test_empty_task_is_refused_before_anything_is_stored(tmp_path):
    swarm, runner = _swarm(tmp_path, SwarmScriptModel())
    from sovereign.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="task is empty"):
        asyncio.run(swarm.run(_agent(), "  "))
    assert runner.store.list() == []


def _lead_swarm(tmp_path, plan_tools: list[str], *, delegating_boss: bool, max_depth: int):
    """A swarm whose one planned node ("lead") spawns two children with its default tools (all
    of its own), waits for them and answers; the requests each run was offered are recorded."""
    planner = SwarmScriptModel(plan={"subtasks": [
        {"id": "lead", "task": "delegate two lookups", "tools": plan_tools, "depends_on": []}]})
    delegating = _delegating_model(child_tools=None)
    offered: dict[str, list[str]] = {}

    def answer(request: ChatRequest) -> ChatResponse:
        if request.response_format.type == "json_schema":  # the orchestrator's plan
            return ChatResponse(model="p", message=Message(role="assistant", content=planner._plan(request)))
        task = next(m.content for m in request.messages if m.role == "user")
        offered[task.splitlines()[0]] = sorted(spec.name for spec in request.tools)
        return delegating.function(request)

    swarm, runner = _swarm(tmp_path, FunctionModel(answer))
    boss = _agent()
    if delegating_boss:
        boss.tools = [*boss.tools, *swarm.delegation.tools()]
    result = asyncio.run(swarm.run(boss, "one lead that delegates", budget=SwarmBudget(max_depth=max_depth)))
    return result, runner, offered


@pytest.mark.parametrize("max_depth", [2, 3])
def test_a_delegating_parent_passes_delegation_down_until_max_depth(tmp_path, max_depth):
    result, runner, offered = _lead_swarm(tmp_path, ["lookup", "spawn_agent", "wait_agents"], delegating_boss=True,
                                          max_depth=max_depth)
    assert result.ok, result.stop_reason
    tree = [(n["id"], n["parent"], n["depth"], n["status"]) for n in result.tree["nodes"]]
    assert tree == [("lead", None, 1, "completed"), ("lead.1", "lead", 2, "completed"),
                    ("lead.2", "lead", 2, "completed")]
    assert "fetch a => value-of-a" in result.answer and "fetch b => value-of-b" in result.answer
    delegation = ["spawn_agent", "wait_agents"]
    lead = runner.store.get(result.tree["nodes"][0]["run_id"])
    assert lead.agent_config["tools"] == ["lookup", *delegation]
    assert offered["delegate two lookups"] == ["lookup", *delegation]
    # the children got all of the lead's tools (spawn_agent's default); delegation only above max_depth
    child = runner.store.get(result.tree["nodes"][1]["run_id"])
    expected = ["lookup", *delegation] if max_depth > 2 else ["lookup"]
    assert child.agent_config["tools"] == expected and result.tree["nodes"][1]["tools"] == expected
    assert offered["fetch a"] == expected


def test_a_sub_agent_of_a_non_delegating_parent_is_not_offered_spawn_agent(tmp_path):
    result, runner, offered = _lead_swarm(tmp_path, ["lookup"], delegating_boss=False, max_depth=3)
    lead = result.tree["nodes"][0]
    assert lead["tools"] == ["lookup"]
    assert runner.store.get(lead["run_id"]).agent_config["tools"] == ["lookup"]
    assert offered["delegate two lookups"] == ["lookup"]
    assert [n["id"] for n in result.tree["nodes"]] == ["lead"]  # its spawn_agent call found no such tool


def test_a_delegating_parent_can_withhold_delegation_from_a_node(tmp_path):
    result, runner, offered = _lead_swarm(tmp_path, ["lookup"], delegating_boss=True, max_depth=3)
    assert result.tree["nodes"][0]["tools"] == ["lookup"] and offered["delegate two lookups"] == ["lookup"]
