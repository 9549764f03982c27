"""One owner: the caller's identity id travels with runs, resumes, approvals and memory. Approvals
are seen and decided by their run's owner or an admin; settings that weaken security are for
admins; a resume is checked against the resuming key's scopes. Over HTTP through the real app,
with deterministic models from sovereign.testing standing in for the kernel."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from sovereign.agent import Runner
from sovereign.config import load_settings
from sovereign.governance.keys import Scopes
from sovereign.kernel.registry import ModelSpec
from sovereign.server.app import create_app
from sovereign.server.bootstrap import bootstrap_admin_key
from sovereign.services import Services
from sovereign.testing import FunctionModel, ScriptedModel, text_response, tool_response
from sovereign.tools.approvals import ApprovalQueue


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = Services.open(load_settings(home))
    keys = {"admin": bootstrap_admin_key(services)}
    for name in ("alice", "bob"):
        services.keys.create_identity(name, role="operator")
        keys[name] = services.keys.create_key(name)[1]
    keys["alice-calc-only"] = services.keys.create_key("alice", scopes=Scopes(tools=["calculator"]))[1]
    keys["alice-other-agent"] = services.keys.create_key("alice", scopes=Scopes(agents=["other"]))[1]
    app = create_app(services, preload=False)
    with TestClient(app) as client:
        yield services, app, client, {who: {"Authorization": f"Bearer {secret}"} for who, secret in keys.items()}
    services.close()


def _use(services, app, model, *, approvals: bool = False) -> None:
    services.register(ModelSpec(name=model.name, backend="in_process"), model)
    queue = ApprovalQueue(services.db, poll_interval=0.02) if approvals else None
    app.state.agent_runner = Runner(services, approver=queue)


def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_approvals_belong_to_the_runs_owner(env):
    services, app, client, auth = env
    script = ScriptedModel([tool_response(("write_file", '{"path": "x.txt", "content": "hi"}')),
                            text_response("done")], name="writer")
    _use(services, app, script, approvals=True)
    made = client.post("/v1/runs", headers=auth["alice"], json={
        "task": "write x", "model": "writer", "definition": {"name": "w", "tools": ["write_file"]}})
    assert made.status_code == 201, made.text
    run_id = made.json()["id"]
    alice_id = services.keys.identity("alice")["id"]
    pending = _wait_for(lambda: client.get("/v1/approvals", headers=auth["alice"]).json()["data"])
    assert len(pending) == 1 and pending[0]["owner"] == alice_id and pending[0]["run_id"] == run_id
    approval_id = pending[0]["id"]

    assert client.get("/v1/approvals", headers=auth["bob"]).json()["data"] == []  # not bob's to see
    assert client.get(f"/v1/approvals/{approval_id}", headers=auth["bob"]).status_code == 404
    assert [a["id"] for a in client.get("/v1/approvals", headers=auth["admin"]).json()["data"]] == [approval_id]
    refused = client.post(f"/v1/approvals/{approval_id}/approve", headers=auth["bob"])
    assert refused.status_code == 403 and "owner" in refused.json()["error"]["message"]
    assert client.post(f"/v1/approvals/{approval_id}/deny", headers=auth["bob"]).status_code == 403
    assert ApprovalQueue(services.db).get(approval_id).status == "pending"

    approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=auth["alice"])
    assert approved.status_code == 200 and approved.json()["decided_by"] == "alice"
    done = _wait_for(lambda: (r := client.get(f"/v1/runs/{run_id}", headers=auth["alice"]).json())["status"]
                     != "running" and r)
    assert done["status"] == "completed" and done["owner"] == alice_id


def test_inline_settings_that_weaken_security_are_admin_only_and_audited(env):
    services, app, client, auth = env
    _use(services, app, ScriptedModel([text_response("ok")], name="plain"))
    body = {"task": "t", "model": "plain", "wait": True, "definition": {"name": "loose", "injection_policy": "off"}}
    refused = client.post("/v1/runs", headers=auth["alice"], json=body)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert "injection_policy" in error["message"] and "admin" in error["message"]
    assert services.db.query_one("SELECT COUNT(*) FROM runs")[0] == 0
    stricter = {**body, "definition": {"name": "strict", "injection_policy": "block"}}
    _use(services, app, ScriptedModel([text_response("ok")], name="plain"))
    assert client.post("/v1/runs", headers=auth["alice"], json=stricter).status_code == 201

    _use(services, app, ScriptedModel([text_response("ok")], name="plain"))
    allowed = client.post("/v1/runs", headers=auth["admin"], json=body)
    assert allowed.status_code == 201 and allowed.json()["status"] == "completed"
    overrides = services.audit.entries(kind="policy.override")
    assert len(overrides) == 1 and overrides[0].data["settings"] == {"injection_policy": "off"}
    assert overrides[0].actor == "local-admin"


def test_resume_is_checked_against_the_resuming_keys_scopes(env):
    services, app, client, auth = env
    script = ScriptedModel([tool_response(("calculator", '{"expression": "1+1"}'))], name="calc-model")
    _use(services, app, script)
    made = client.post("/v1/runs", headers=auth["alice"], json={
        "task": "add", "model": "calc-model", "wait": True, "budget": {"max_steps": 1},
        "definition": {"name": "calc", "tools": ["calculator", "read_file"]}})
    run = made.json()
    assert run["status"] == "stopped" and "max_steps" in run["stop_reason"]

    no_tool = client.post(f"/v1/runs/{run['id']}/resume", headers=auth["alice-calc-only"])
    assert no_tool.status_code == 403 and "read_file" in no_tool.json()["error"]["message"]
    no_agent = client.post(f"/v1/runs/{run['id']}/resume", headers=auth["alice-other-agent"])
    assert no_agent.status_code == 403 and "calc" in no_agent.json()["error"]["message"]
    assert client.post(f"/v1/runs/{run['id']}/resume", headers=auth["bob"]).status_code == 404

    _use(services, app, ScriptedModel([text_response("2")], name="calc-model"))
    resumed = client.post(f"/v1/runs/{run['id']}/resume", headers=auth["alice"],
                          json={"budget": {"max_steps": 3}})
    assert resumed.status_code == 200, resumed.text
    done = _wait_for(lambda: (r := client.get(f"/v1/runs/{run['id']}", headers=auth["alice"]).json())["status"]
                     != "running" and r)
    assert done["status"] == "completed" and done["answer"] == "2"
    calls = services.audit.entries(kind="model.call")
    assert {e.data["identity_id"] for e in calls} == {services.keys.identity("alice")["id"]}


def test_memory_added_over_the_api_is_recalled_in_that_identitys_runs(env):
    services, app, client, auth = env
    seen: list[str] = []

    def answer(request):
        seen.append(request.messages[0].content or "")
        return text_response("noted")

    _use(services, app, FunctionModel(answer, name="mem-model"))
    added = client.post("/v1/memory", headers=auth["alice"],
                        json={"content": "Alice's deploy window is Tuesday 14:00 UTC.", "agent": "planner"})
    assert added.status_code == 200, added.text
    assert added.json()["item"]["owner"] == services.keys.identity("alice")["id"]

    body = {"task": "When is my deploy window?", "model": "mem-model", "wait": True,
            "definition": {"name": "planner"}}
    assert client.post("/v1/runs", headers=auth["alice"], json=body).json()["status"] == "completed"
    assert "Tuesday 14:00 UTC" in seen[-1]
    assert client.post("/v1/runs", headers=auth["bob"], json=body).json()["status"] == "completed"
    assert "Tuesday 14:00 UTC" not in seen[-1]  # bob's runs do not recall alice's memories
