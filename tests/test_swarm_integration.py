"""A swarm on the real embedded 0.5B model: the plan is decoded under the plan's JSON schema (so
it parses), each sub-agent is a real agent run reading a workspace file, and the orchestrator
merges their answers."""

from __future__ import annotations

import asyncio

import pytest

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.store import Database
from sovereign.swarm import Swarm, SwarmBudget
from sovereign.tools.builtins import builtin_tools

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1200)
def test_real_model_swarm_reads_two_files_in_parallel(embedded_model, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "france.txt").write_text("The capital of France is Paris.\n")
    (workspace / "japan.txt").write_text("The capital of Japan is Tokyo.\n")
    tools = [t for t in builtin_tools(workspace) if t.name in ("read_file", "list_files")]
    runner = Runner(model=embedded_model, store=RunStore(Database(tmp_path / "s.db")), workspace=workspace)
    agent = Agent(name="boss", mode="code", tools=tools, max_tokens=128, budget=Budget(max_steps=5, max_tool_calls=6))
    task = ("Answer both questions, one sub-task each:\n- Which city does france.txt name?\n"
            "- Which city does japan.txt name?")
    swarm = Swarm(runner, plan_tokens=160, synthesis_tokens=64, max_plan_attempts=2)
    result = asyncio.run(swarm.run(agent, task, budget=SwarmBudget(max_agents=4, max_concurrency=2, max_depth=1,
                                                                    max_output_tokens=4000)))
    steps = runner.store.get(result.swarm_id).steps
    assert [s.text for s in steps if s.kind == "notice"][0] == "plan"
    nodes = result.tree["nodes"]
    assert nodes and all(runner.store.get(n["run_id"]).status == n["status"] for n in nodes if n["run_id"])
    assert result.status == "completed", result.stop_reason
    assert "Paris" in result.answer or "Tokyo" in result.answer
    run = runner.store.get(result.swarm_id)
    assert run.spent.usage.completion_tokens <= 4000
