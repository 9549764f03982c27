"""The Ray executor: the same task gives the same tree and answers on asyncio and on real Ray
workers (one local Ray cluster, ``num_cpus=2``, shared by the test session). Uses the scripted
swarm double (``sovereign.testing.swarm``), which pickles to the workers."""

from __future__ import annotations

import asyncio

import pytest

from sovereign.agent import Agent, Runner, RunStore
from sovereign.store import Database
from sovereign.swarm import RayExecutor, Swarm, SwarmBudget, WorkerSpec
from sovereign.swarm.executors import start_ray
from sovereign.testing.swarm import SwarmScriptModel, lookup_tool

ray = pytest.importorskip("ray")

PLAN = {"subtasks": [
    {"id": "a", "task": "fetch alpha", "tools": ["lookup"], "depends_on": []},
    {"id": "b", "task": "fetch FAIL beta", "tools": ["lookup"], "depends_on": []},
    {"id": "c", "task": "fetch gamma", "tools": ["lookup"], "depends_on": []},
    {"id": "d", "task": "combine", "tools": [], "depends_on": ["a", "b", "c"]},
]}


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the session (startup is slow on two cores)."""
    if not ray.is_initialized():
        start_ray(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _shape(tree: dict) -> list[tuple]:
    return [(n["id"], n["task"], tuple(n["depends_on"]), n["status"], n["attempts"], n["answer"], n["steps"],
             n["tool_calls"], n["run_id"].split(".", 1)[1]) for n in tree["nodes"]]


def _run(tmp_path, name: str, executor=None):
    db = tmp_path / f"{name}.db"
    runner = Runner(model=SwarmScriptModel(plan=PLAN), store=RunStore(Database(db)))
    swarm = Swarm(runner, executor=executor(str(db)) if executor else None)
    agent = Agent(name="boss", tools=[lookup_tool()])
    result = asyncio.run(swarm.run(agent, "alpha, beta, gamma, then combine", budget=SwarmBudget(max_concurrency=3)))
    return result, runner


def test_same_tree_and_answers_on_asyncio_and_ray(tmp_path, ray_cluster):
    local, _ = _run(tmp_path, "local")

    def ray_executor(db: str) -> RayExecutor:
        spec = WorkerSpec(db_path=db, model=SwarmScriptModel(plan=PLAN), tools=[lookup_tool()])
        return RayExecutor(spec, workers=2)

    remote, runner = _run(tmp_path, "ray", ray_executor)
    assert local.ok and remote.ok, (local.stop_reason, remote.stop_reason)
    assert remote.tree["executor"] == "ray" and local.tree["executor"] == "asyncio"
    assert _shape(remote.tree) == _shape(local.tree)
    assert remote.answer == local.answer
    # the sub-agents ran in worker processes and are stored runs like any other
    b = next(n for n in remote.tree["nodes"] if n["id"] == "b")
    assert b["attempts"] == 2 and runner.store.get(b["run_id"]).status == "completed"
