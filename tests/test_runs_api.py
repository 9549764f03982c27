"""``/v1/runs`` over HTTP, with the deterministic scripted model (sovereign.testing) standing in
for the kernel: create (and wait), get, list, stream events (SSE), cancel."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from sovereign.agent import Runner
from sovereign.config import load_settings
from sovereign.kernel.messages import ChatRequest, ChatResponse
from sovereign.server.app import create_app
from sovereign.services import Services
from sovereign.testing import ScriptedModel, text_response


@pytest.fixture
def services(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[server]\nrequire_api_key = false\n")
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    services = Services.open(load_settings(home))
    yield services
    services.close()


def _client(services, model) -> TestClient:
    app = create_app(services, preload=False)
    app.state.agent_runner = Runner(services, model=model)
    return TestClient(app)


def test_create_wait_get_list_and_stream(services):
    model = ScriptedModel([text_response("Paris")])
    with _client(services, model) as client:
        made = client.post("/v1/runs", json={"task": "Capital of France?", "wait": True,
                                             "definition": {"name": "geo", "instructions": "Be brief."},
                                             "budget": {"max_steps": 3}})
        assert made.status_code == 201, made.text
        run = made.json()
        assert run["status"] == "completed" and run["answer"] == "Paris"
        assert [s["kind"] for s in run["steps"]] == ["task", "model_call", "final_answer"]

        got = client.get(f"/v1/runs/{run['id']}").json()
        assert got["usage"]["model_calls"] == 1 and got["owner"] == services.keys.local_principal().identity_id
        listed = client.get("/v1/runs").json()["data"]
        assert [r["id"] for r in listed] == [run["id"]]

        with client.stream("GET", f"/v1/runs/{run['id']}/events") as stream:
            body = "".join(stream.iter_text())
        events = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")]
        assert events == ["step", "step", "step", "done"]
        done = json.loads(body.rstrip().splitlines()[-1].split(": ", 1)[1])
        assert done["status"] == "completed"

        assert client.get("/v1/runs/run_nope").status_code == 404
        bad = client.post("/v1/runs", json={"task": "x", "agent": "ghost"})
        assert bad.status_code == 404 and "ghost" in bad.text


class _BlockingModel:
    """Never answers until cancelled (a model call in progress)."""

    name = "blocking"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream(self, request):  # pragma: no cover - not used by the runner
        yield None


def test_cancel_a_running_run(services):
    with _client(services, _BlockingModel()) as client:
        run = client.post("/v1/runs", json={"task": "think forever", "definition": {"name": "slow"}}).json()
        assert run["status"] == "running"
        cancelled = client.post(f"/v1/runs/{run['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        steps = client.get(f"/v1/runs/{run['id']}").json()["steps"]
        assert steps[-1]["kind"] == "final_answer" and steps[-1]["status"] == "cancelled"
