"""A swarm killed with ``kill -9`` in the middle of its fan-out, then resumed in another process:
the finished sub-agents are not run again, the interrupted one continues as a run, and the swarm
completes. Uses the scripted swarm double (``sovereign.testing.swarm``)."""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter

from swarm_kill import kill_when, node_ids

from sovereign.agent import Agent, Runner, RunStore
from sovereign.store import Database
from sovereign.swarm import Swarm, SwarmStore
from sovereign.testing.swarm import SwarmScriptModel, lookup_tool

_CHILD = textwrap.dedent("""
    import asyncio, sys
    from sovereign.agent import Agent, Runner, RunStore
    from sovereign.store import Database
    from sovereign.swarm import Swarm, SwarmBudget
    from sovereign.testing.swarm import SwarmScriptModel, lookup_tool

    db, log = sys.argv[1], sys.argv[2]
    runner = Runner(model=SwarmScriptModel(latency=0.15), store=RunStore(Database(db)))
    agent = Agent(name="boss", tools=[lookup_tool(latency=0.1, log=log)])
    task = "Look these up:\\n" + "\\n".join(f"- fetch k{i}" for i in range(6))
    asyncio.run(Swarm(runner).run(agent, task, budget=SwarmBudget(max_concurrency=2), swarm_id="swarm_killed"))
""")


def test_kill_9_mid_swarm_then_resume_repeats_no_finished_sub_agent(tmp_path):
    db_path, log = tmp_path / "swarm.db", tmp_path / "calls.log"
    kill_when(_CHILD, [str(db_path), str(log)], lambda: len(node_ids(db_path, "completed")) >= 2)
    done_before = set(node_ids(db_path, "completed"))
    calls_before = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(done_before) < 6

    runner = Runner(model=SwarmScriptModel(), store=RunStore(Database(db_path)))
    swarm = Swarm(runner)
    assert runner.store.get("swarm_killed").status == "running"
    result = asyncio.run(swarm.resume("swarm_killed", agent=Agent(name="boss", tools=[lookup_tool(log=str(log))])))
    assert result.ok, result.stop_reason
    assert result.answer.splitlines()[1:] == [f"fetch k{i} => value-of-k{i}" for i in range(6)]

    calls = Counter(line.split()[0] for line in log.read_text().splitlines())
    nodes = {n.node_id: n for n in SwarmStore(runner.store.db).nodes("swarm_killed")}
    for node_id in done_before:
        key = nodes[node_id].task.split()[-1]
        assert calls[key] == calls_before[key] == 1  # not looked up again
        assert nodes[node_id].attempts == 1
    assert set(calls) == {f"k{i}" for i in range(6)}
    # the sub-agents that were running were continued as the same runs, not started afresh
    assert all(n.attempts == 1 and n.run_id.endswith(".1") for n in nodes.values())
    # only a call that was in flight at the kill can have run twice
    assert sum(calls.values()) - 6 <= 2
    # the plan was not asked for again: one plan step, one synthesis step
    kinds = [s.text for s in runner.store.get("swarm_killed").steps if s.kind == "notice"]
    assert kinds == ["plan", "synthesis"]
