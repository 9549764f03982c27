"""Local-first escalation, per-call fail-over inside agent runs, active health probes and
``auto`` in ``/v1/models`` — with the deterministic doubles of ``sovereign.testing`` (they
stand in for the backends; the routing, governance, audit and cost reports are the real ones)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sovereign.errors import ModelUnavailableError
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.router.breaker import Breakers
from sovereign.server.app import create_app
from sovereign.testing import FunctionModel, text_response, tool_response
from tests.conftest import ADMIN_KEY, open_api_services

SMALL, MEDIUM = "tiny-local", "mid-local"
ROUTER = f'[router]\ncandidates = ["{SMALL}", "{MEDIUM}"]\nprobe_interval_s = 0\n'
FACT = "What is the capital of France?"
PRICE = PriceSheet(0.0, 1.0, 2.0)  # $ per million tokens: every call has a cost to report


def answering(text: str) -> FunctionModel:
    return FunctionModel(lambda request: text_response(text))


def _serve(services, small: FunctionModel, medium: FunctionModel) -> None:
    for name, tier, double in ((SMALL, "small", small), (MEDIUM, "medium", medium)):
        double.name = name
        services.register(ModelSpec(name, "in_process", tier=tier, licence="Apache-2.0", jurisdiction="local",
                                    prices=PRICE), double)


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER)
    small, medium = answering("Lyon"), answering("Paris")
    _serve(services, small, medium)
    with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client, services, small, medium
    services.close()


def chat(client, content, **extra):
    return client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": content}],
                                                     **extra})


# --- escalation -------------------------------------------------------------------------------


def test_malformed_output_against_the_schema_escalates_and_reports_its_cost(api):
    client, services, small, medium = api
    small.function = lambda r: text_response('{"city": 7}')
    medium.function = lambda r: text_response('{"city": "Paris"}')
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = chat(client, FACT, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    escalation = body["routing"]["escalation"]
    assert escalation["from"] == SMALL and escalation["to"] == MEDIUM and "schema" in escalation["problem"]
    assert escalation["first_cost_usd"] > 0 and escalation["extra_cost_usd"] > 0
    assert body["cost_usd"] == pytest.approx(escalation["first_cost_usd"] + escalation["extra_cost_usd"])
    assert json.loads(body["choices"][0]["message"]["content"]) == {"city": "Paris"}
    audited = services.audit.entries(kind="router.escalated")[-1].data
    assert audited["to"] == MEDIUM and audited["extra_cost_usd"] == pytest.approx(escalation["extra_cost_usd"])
    costs = client.get("/v1/costs").json()["escalations"]
    assert costs["routed"] == 1 and costs["escalated"] == 1
    assert costs["spend_usd"] == pytest.approx(escalation["extra_cost_usd"])
    small.function = lambda r: text_response('{"city": "Lyon"}')
    valid = chat(client, FACT, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert valid.json()["routing"]["escalation"] is None  # it matches the schema: the small answer stands


def test_a_hedged_answer_is_low_confidence_and_escalates(api):
    client, services, small, medium = api
    small.function = lambda r: text_response("I'm not sure, maybe Lyon.")
    routing = chat(client, FACT).json()["routing"]
    assert routing["model"] == MEDIUM and routing["escalation"]["problem"].startswith("low confidence")
    small.function = lambda r: text_response("Paris.")
    assert chat(client, FACT).json()["routing"]["model"] == SMALL


def test_a_verifier_no_escalates_and_its_cost_is_the_checks(api):
    client, services, small, medium = api
    services.settings.router.verifier = MEDIUM

    def medium_answers(request: ChatRequest):
        asked = request.messages[-1].content or ""
        if "Proposed answer" in asked:
            return text_response("no" if "Lyon" in asked else "yes")
        return text_response("Paris")

    medium.function = medium_answers
    wrong = chat(client, FACT).json()
    assert wrong["choices"][0]["message"]["content"] == "Paris"
    escalation = wrong["routing"]["escalation"]
    assert escalation["to"] == MEDIUM and "verifier" in escalation["problem"] and escalation["check_cost_usd"] > 0
    assert wrong["cost_usd"] == pytest.approx(escalation["first_cost_usd"] + escalation["check_cost_usd"]
                                              + escalation["extra_cost_usd"])
    verify_call = medium.requests[0]
    assert verify_call.max_tokens == 4 and not verify_call.thinking.enabled
    small.function = lambda r: text_response("Paris")
    right = chat(client, FACT).json()["routing"]
    assert right["model"] == SMALL and right["escalation"] is None and right["check_cost_usd"] > 0
    costs = client.get("/v1/costs").json()["escalations"]
    assert costs["escalated"] == 1 and costs["check_cost_usd"] == pytest.approx(
        escalation["check_cost_usd"] + right["check_cost_usd"])
    assert costs["spend_usd"] == pytest.approx(costs["check_cost_usd"] + costs["extra_cost_usd"])


def test_a_failed_check_with_nothing_bigger_is_reported_not_hidden(api, monkeypatch):
    client, services, small, medium = api
    services.settings.router.candidates = [SMALL]
    small.function = lambda r: text_response("")
    routing = chat(client, FACT).json()["routing"]
    assert routing["model"] == SMALL and routing["escalation"] == {
        **routing["escalation"], "problem": "empty answer", "from": SMALL, "to": None}
    assert "no bigger model" in routing["reason"] and services.audit.entries(kind="router.escalated") == []
    services.settings.router.candidates = [SMALL, MEDIUM]
    chat(client, FACT)
    monkeypatch.setenv("SOVEREIGN_HOME", str(services.settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(__import__("sovereign.cli.main", fromlist=["app"]).app, ["costs"])
    assert shown.exit_code == 0, shown.output
    assert "2 routed requests, 1 escalated (50%)" in shown.output and "escalation spend" in shown.output


# --- active health probes ---------------------------------------------------------------------


def test_a_cooled_down_breaker_is_probed_before_a_request_risks_it(api, run_async):
    client, services, small, medium = api
    now = [0.0]
    services.router.breakers = Breakers(2, 30.0, clock=lambda: now[0])
    small.function = lambda r: (_ for _ in ()).throw(ModelUnavailableError("down"))
    for _ in range(2):
        assert chat(client, FACT).json()["routing"]["model"] == MEDIUM
    assert services.router.breakers.status()[SMALL]["open"]
    now[0] += 31
    before = len(small.requests)
    still_down = chat(client, FACT).json()["routing"]  # the probe fails: the request never touches SMALL
    assert still_down["model"] == MEDIUM and still_down["fallbacks"] == []
    assert len(small.requests) == before + 1 and small.requests[-1].max_tokens == 1  # only the one-token probe
    probe = services.audit.entries(kind="router.probe")[-1].data
    assert probe["model"] == SMALL and probe["ok"] is False
    assert services.router.breakers.status()[SMALL]["open"]
    now[0] += 31
    small.function = lambda r: text_response("Paris")
    assert run_async(services.router.prober.probe_due()) == {SMALL: None}  # what the server's timer calls
    assert services.router.breakers.status() == {} and services.audit.entries(kind="router.probe")[-1].data["ok"]
    assert chat(client, FACT).json()["routing"]["model"] == SMALL


# --- auto in /v1/models -----------------------------------------------------------------------


def test_auto_is_listed_only_when_it_can_route(api):
    client, services, small, medium = api
    listed = client.get("/v1/models").json()["data"]
    assert listed[0]["id"] == "auto" and listed[0]["candidates"] == [SMALL, MEDIUM]
    services.settings.router.candidates = ["deepseek-v4-flash"]  # remote, and this home is offline
    assert "auto" not in [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert client.get("/v1/models/auto").status_code == 404


# --- per-call fail-over inside an agent run --------------------------------------------------


def test_an_auto_run_fails_over_per_call_when_its_model_dies_mid_run(tmp_path, monkeypatch, run_async):
    from sovereign.agent import AllowAll, Runner
    from sovereign.agent.agent import Agent
    from sovereign.tools.calculator import calculator_tool

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER)
    calls = []

    def medium_turns(request: ChatRequest):
        calls.append(request)
        if len(calls) == 1:
            return tool_response(("calculator", '{"expression": "6*7"}'))
        raise ModelUnavailableError("the backend went away")

    small, medium = answering("The answer is 42."), FunctionModel(medium_turns)
    _serve(services, small, medium)
    runner = Runner(services, approver=AllowAll())
    result = run_async(runner.run(Agent(name="calc", model="auto", tools=[calculator_tool()], verify="off"),
                                  "Use the calculator to work out 6*7."))
    assert result.ok and "42" in result.answer
    assert runner.store.get(result.run_id).model == MEDIUM  # tools offered: the medium tier first
    assert len(calls) == 2 and len(small.requests) == 1  # the second turn went to the next model of the plan
    failover = services.audit.entries(kind="router.failover")[-1].data
    assert failover == {**failover, "run_id": result.run_id, "model": MEDIUM, "error": "the backend went away"}
    assert services.router.breakers.status()[MEDIUM]["failures"] == 1
    rows = {r["model"]: r for r in services.ledger.recent() if r["run_id"] == result.run_id}
    assert set(rows) == {SMALL, MEDIUM}  # each call priced as the model that served it
    assert result.spent.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows.values()))
    stored = json.loads(json.dumps(runner.store.get(result.run_id).to_dict()))
    assert stored["agent"] == "calc"
    services.close()


def test_a_named_model_run_does_not_fail_over(tmp_path, monkeypatch, run_async):
    from sovereign.agent import AllowAll, Runner
    from sovereign.agent.agent import Agent

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER)
    small = FunctionModel(lambda r: (_ for _ in ()).throw(ModelUnavailableError("down")))
    medium = answering("Paris")
    _serve(services, small, medium)
    runner = Runner(services, approver=AllowAll())
    result = run_async(runner.run(Agent(name="pinned", model=SMALL, tools=[], verify="off"), FACT))
    assert not result.ok and "down" in result.stop_reason
    assert medium.requests == [] and services.audit.entries(kind="router.failover") == []
    services.close()


def test_api_run_with_model_auto(api):
    client, services, small, medium = api
    created = client.post("/v1/runs", json={"task": FACT, "model": "auto", "wait": True,
                                            "definition": {"name": "quick", "tools": [], "verify": "off"}})
    assert created.status_code == 201, created.text
    assert created.json()["model"] == SMALL and created.json()["status"] == "completed"


def test_a_real_http_backend_killed_mid_run_hands_the_next_call_over(tmp_path, monkeypatch, run_async):
    """An OpenAI-compatible backend on loopback serves the run's first turn and is then shut down
    (by the tool the run calls): the second turn's connection is refused and goes to the next
    model of the plan; the run completes."""
    import http.server
    import threading

    from sovereign.agent import AllowAll, Runner
    from sovereign.agent.agent import Agent
    from sovereign.kernel.openai_backend import OpenAICompatibleModel
    from sovereign.tools.base import PURE, tool

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            call = {"id": "call_1", "type": "function", "function": {"name": "stop_peer", "arguments": "{}"}}
            data = json.dumps({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [call]}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    @tool(effects=PURE)
    def stop_peer() -> str:
        """Shut the peer backend down."""
        server.shutdown()
        server.server_close()
        return "stopped"

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", f'[router]\ncandidates = ["peer", "{SMALL}"]\nprobe_interval_s = 0\n')
    small = answering("The peer is stopped.")
    _serve(services, small, answering("unused"))
    spec = ModelSpec("peer", "openai", tier="medium", jurisdiction="local",
                     base_url=f"http://127.0.0.1:{server.server_port}/v1")
    services.register(spec, OpenAICompatibleModel(spec, services.egress, timeout=5))
    runner = Runner(services, approver=AllowAll())
    result = run_async(runner.run(Agent(name="ops", model="auto", tools=[stop_peer], verify="off"),
                                  "Stop the peer backend, then say so."))
    assert result.ok and result.answer == "The peer is stopped.", result.stop_reason
    assert runner.store.get(result.run_id).model == "peer" and len(small.requests) == 1
    failover = services.audit.entries(kind="router.failover")[-1].data
    assert failover["model"] == "peer" and failover["run_id"] == result.run_id
    services.close()
