"""Swarms through the interfaces, on the governed path: ``POST /v1/runs`` with ``swarm``, the tree
and critical path in ``GET /v1/runs/{id}``, ``node`` events in the stream, bad input as 4xx;
``sovereign run --swarm`` and the tree in ``sovereign runs show``. The model is the scripted
swarm double (``sovereign.testing.swarm``)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sovereign.agent import Runner, RunStore
from sovereign.config import load_settings
from sovereign.server.app import create_app
from sovereign.services import Services
from sovereign.testing import serve_every_tier
from sovereign.testing.swarm import SwarmScriptModel

TASK = "Compute these:\n- calc 2+3\n- calc 4*5\n- calc 7-1"


def _model() -> SwarmScriptModel:
    return SwarmScriptModel(tool="calculator", arg="expression")


@pytest.fixture
def services(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[server]\nrequire_api_key = false\n[swarm]\nmax_concurrency = 2\n")
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    services = Services.open(load_settings(home))
    yield services
    services.close()


def _client(services) -> TestClient:
    app = create_app(services, preload=False)
    app.state.agent_runner = Runner(services, model=_model())
    return TestClient(app)


DEFINITION = {"name": "boss", "tools": ["calculator"], "mode": "tools"}


def test_swarm_over_http_with_tree_critical_path_and_node_events(services):
    with _client(services) as client:
        made = client.post("/v1/runs", json={"task": TASK, "wait": True, "definition": DEFINITION,
                                             "swarm": {"max_agents": 8}})
        assert made.status_code == 201, made.text
        run = made.json()
        assert run["status"] == "completed", run["stop_reason"]
        assert run["answer"].splitlines()[1:] == ["calc 2+3 => 5", "calc 4*5 => 20", "calc 7-1 => 6"]
        tree = run["swarm"]
        assert tree["budget"]["max_agents"] == 8 and tree["budget"]["max_concurrency"] == 2  # request, then config
        assert [(n["id"], n["status"], n["tool_calls"]) for n in tree["nodes"]] == [
            ("n1", "completed", 1), ("n2", "completed", 1), ("n3", "completed", 1)]
        assert all(n["prompt_tokens"] > 0 and n["time_s"] > 0 for n in tree["nodes"])

        got = client.get(f"/v1/runs/{run['id']}").json()
        critical = got["swarm"]["critical_path"]
        assert critical["critical_steps"] == 4 and critical["total_steps"] == 8
        assert critical["critical_path_s"] <= critical["sum_of_parts_s"] and critical["speedup"] > 0
        assert got["usage"]["tool_calls"] == 3  # the tree's totals on the swarm's run

        with client.stream("GET", f"/v1/runs/{run['id']}/events") as stream:
            body = stream.read().decode()
        nodes = [json.loads(line[6:])["node"] for line in body.splitlines()
                 if line.startswith("data: ") and '"node"' in line]
        assert sorted(n["id"] for n in nodes) == ["n1", "n2", "n3"]

    # every sub-agent ran as an agent identity owned by the same human, on the governed path
    admin = services.keys.local_principal().identity_id
    sub = services.keys.identity(f"{run['id']}.sub")
    assert sub["kind"] == "agent" and sub["owner_id"] == admin
    rows = services.db.query("SELECT run_id, owner_id, agent_id FROM usage_ledger")
    node_rows = [r for r in rows if r["run_id"] != run["id"]]
    assert len(node_rows) == 6 and {r["agent_id"] for r in node_rows} == {sub["id"]}
    assert {r["owner_id"] for r in rows} == {admin}
    assert {r["run_id"] for r in rows if r["run_id"] == run["id"]}  # the orchestrator's own calls
    audited = services.db.query("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'model.call'")[0]["n"]
    assert audited == len(rows)


@pytest.mark.parametrize("tools, offered", [(["calculator"], ["calculator"]),
                                            (["calculator", "spawn_agent", "wait_agents"],
                                             ["calculator", "spawn_agent", "wait_agents"])])
def test_over_http_sub_agents_get_delegation_only_from_a_delegating_definition(services, tools, offered):
    plan = {"subtasks": [{"id": "a", "task": "calc 2+3", "tools": ["calculator", "spawn_agent", "wait_agents"],
                          "depends_on": []}]}
    with TestClient(create_app(services, preload=False)) as client:
        client.app.state.agent_runner = Runner(services, model=SwarmScriptModel(
            plan=plan, tool="calculator", arg="expression"))
        made = client.post("/v1/runs", json={"task": "calc 2+3", "wait": True, "swarm": {"max_depth": 2},
                                             "definition": DEFINITION | {"tools": tools}})
        assert made.status_code == 201, made.text
        run = made.json()
        assert run["status"] == "completed", run["stop_reason"]
    node = run["swarm"]["nodes"][0]  # without delegation the plan names tools the agent lacks: one node
    assert node["tools"] == offered
    assert RunStore(services.db).get(node["run_id"]).agent_config["tools"] == offered


@pytest.mark.parametrize("swarm, field", [({"max_agents": 0}, "max_agents"), ({"executor": "gpu"}, "executor"),
                                          ({"bogus": 1}, "bogus")])
def test_bad_swarm_options_are_4xx_naming_the_field(services, swarm, field):
    with _client(services) as client:
        response = client.post("/v1/runs", json={"task": TASK, "definition": DEFINITION, "swarm": swarm})
        assert response.status_code in (400, 422), response.text
        assert field in response.text and "error" in response.json()
        assert client.get("/v1/runs").json()["data"] == []


def test_cli_run_swarm_then_runs_show(services, monkeypatch):
    import sovereign.cli.run as cli_run

    def opened():
        fresh = Services.open(load_settings(services.settings.home))
        serve_every_tier(fresh, _model())
        return fresh

    monkeypatch.setattr(cli_run, "_open_services", opened)
    cli = CliRunner(env={"COLUMNS": "200"})
    app = cli_run._standalone()
    result = cli.invoke(app, ["run", "--swarm", "--tools", "calculator", "--mode", "tools",
                              "--swarm-budget", "agents=5,concurrency=3", TASK])
    assert result.exit_code == 0, result.output
    assert "node n2 completed" in result.output and "critical path" in result.output
    assert "calc 4*5 => 20" in result.output
    swarm_id = services.db.query("SELECT id FROM swarms")[0]["id"]
    shown = cli.invoke(app, ["runs", "show", swarm_id])
    assert shown.exit_code == 0, shown.output
    assert "CriticalSteps 4" in shown.output and "n3" in shown.output
    as_json = json.loads(cli.invoke(app, ["runs", "show", swarm_id, "--json"]).output)
    assert as_json["swarm"]["budget"]["max_agents"] == 5 and len(as_json["swarm"]["nodes"]) == 3
    assert all(n["tools"] == ["calculator"] for n in as_json["swarm"]["nodes"])  # no delegation: not asked for

    bad = cli.invoke(app, ["run", "--swarm", "--swarm-budget", "agents=many", TASK])
    assert bad.exit_code == 1 and "must be a number" in bad.output
