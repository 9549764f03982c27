"""The router (``model: "auto"``) with deterministic doubles: policy refusals naming the
constraint, difficulty picking effort and tier, fallbacks and circuit breakers, caps reserved
before routed calls, escalation — through the API, the CLI and agent configuration."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sovereign.errors import ModelUnavailableError, RoutingRefusedError
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.router.breaker import Breakers
from sovereign.server.app import create_app
from sovereign.testing import FunctionModel, text_response
from tests.conftest import ADMIN_KEY, open_api_services

SMALL, MEDIUM, REMOTE = "tiny-local", "mid-local", "eu-remote"
ROUTER = f'[router]\ncandidates = ["{SMALL}", "{MEDIUM}", "{REMOTE}"]\noffline = false\n'
FACT = "What is the capital of France?"
SUM = "Tom has 3 apples and buys 4 bags with 5 apples each. How many apples does he have in total?"


def answering(text: str = "ok"):
    return FunctionModel(lambda request: text_response(text))


def failing(error: Exception):
    def boom(request: ChatRequest):
        raise error
    return FunctionModel(boom)


def _serve(services, small=None, medium=None, remote=None):
    doubles = {SMALL: small or answering("small"), MEDIUM: medium or answering("medium"),
               REMOTE: remote or answering("remote")}
    specs = [ModelSpec(SMALL, "in_process", tier="small", licence="Apache-2.0", jurisdiction="local"),
             ModelSpec(MEDIUM, "in_process", tier="medium", licence="Apache-2.0", jurisdiction="local"),
             ModelSpec(REMOTE, "openai", tier="large", licence="proprietary", jurisdiction="EU",
                       base_url="https://api.example.eu/v1", prices=PriceSheet(0.1, 1.0, 2.0))]
    for spec in specs:
        doubles[spec.name].name = spec.name
        services.register(spec, doubles[spec.name])
    return doubles


@pytest.fixture
def routed(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER)
    doubles = _serve(services)
    with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client, services, doubles
    services.close()


def chat(client, content, **extra):
    return client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": content}],
                                                     **extra})


def test_difficulty_picks_effort_and_tier_and_the_decision_comes_back(routed):
    client, services, doubles = routed
    fact = chat(client, FACT)
    assert fact.status_code == 200, fact.text
    routing = fact.json()["routing"]
    assert routing["model"] == SMALL and routing["effort"] == "none" and routing["kind"] == "factoid"
    assert fact.headers["X-Sovereign-Route-Model"] == SMALL and fact.json()["model"] == SMALL
    assert doubles[SMALL].requests[-1].thinking.enabled is False
    arithmetic = chat(client, SUM).json()["routing"]
    assert arithmetic["kind"] == "arithmetic" and arithmetic["effort"] in ("low", "medium")
    sent = doubles[SMALL].requests[-1].thinking
    assert sent.enabled and sent.budget_tokens == arithmetic["budget_tokens"] > 0  # the budget is enforced downstream
    logic = chat(client, "All cats are animals. Some animals are black. If Tom is a cat, then must Tom be black? "
                         "Answer true or false, and explain whether it follows.").json()["routing"]
    assert logic["kind"] == "logic" and logic["model"] == MEDIUM
    own = chat(client, FACT, reasoning_effort="high").json()["routing"]
    assert own["effort"] == "high" and "as the request set it" in own["reason"]
    decisions = services.audit.entries(kind="router.decision")
    assert [d.data["model"] for d in decisions] == [SMALL, SMALL, MEDIUM, SMALL]


def test_policy_refusal_names_the_constraint(routed, tmp_path):
    client, services, doubles = routed
    services.settings.router.candidates = [REMOTE]
    private = chat(client, FACT)  # default data class: private
    assert private.status_code == 403
    error = private.json()["error"]
    assert error["code"] == "routing_policy" and "data class 'private' never leaves this machine" in error["message"]
    services.settings.router.jurisdictions = ["local", "CH"]
    public = chat(client, FACT, data_class="public").json()["error"]["message"]
    assert "jurisdiction 'EU' is not in the residency allowlist [local, CH]" in public
    services.settings.router.jurisdictions = []
    services.settings.router.licences = ["Apache-2.0", "MIT*"]
    assert "licence 'proprietary'" in chat(client, FACT, data_class="public").json()["error"]["message"]
    services.settings.router.licences = []
    services.settings.router.offline = True
    assert "offline mode" in chat(client, FACT, data_class="public").json()["error"]["message"]
    assert doubles[REMOTE].requests == []  # never sent elsewhere
    assert len(services.audit.entries(kind="router.refused")) == 4
    services.settings.router.offline = False
    allowed = chat(client, FACT, data_class="public")
    assert allowed.status_code == 200 and allowed.json()["routing"]["model"] == REMOTE


def test_fallback_then_breaker_cooldown_and_recovery(tmp_path, monkeypatch, run_async):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER + "failures_to_open = 2\ncooldown_s = 30\n")
    down = failing(ModelUnavailableError("backend down"))
    doubles = _serve(services, small=down)
    now = [1000.0]
    services.router.breakers = Breakers(2, 30.0, clock=lambda: now[0])
    principal = services.keys.local_principal()
    request = ChatRequest(model="auto", messages=[Message(role="user", content=FACT)])

    async def ask():
        return await services.router.complete(request, principal)

    for _ in range(2):
        response, decision, _ = run_async(ask())
        assert decision.model == MEDIUM and decision.tried == [{"model": SMALL, "error": "backend down"}]
    assert len(down.requests) == 2
    response, decision, _ = run_async(ask())  # breaker open: the small model is not even tried
    assert len(down.requests) == 2 and decision.tried == [] and response.message.content == "medium"
    now[0] += 31  # cooldown over: one trial call, which succeeds, closes the breaker
    down.function = lambda r: text_response("small again")
    response, decision, _ = run_async(ask())
    assert decision.model == SMALL and response.message.content == "small again"
    assert services.router.breakers.status() == {}
    services.close()


def test_timeout_fails_over_and_everything_down_is_a_503(routed):
    client, services, doubles = routed
    services.settings.router.timeout_s = 0.05
    doubles[SMALL].latency = 1.0
    reply = chat(client, FACT)
    assert reply.status_code == 200 and reply.json()["routing"]["fallbacks"][0]["model"] == SMALL
    doubles[MEDIUM].latency = 1.0
    services.settings.router.candidates = [SMALL, MEDIUM]
    dead = chat(client, FACT)
    assert dead.status_code == 503 and "every allowed model failed" in dead.json()["error"]["message"]


def test_caps_are_reserved_before_routed_calls(routed):
    client, services, doubles = routed
    services.settings.router.candidates = [REMOTE]
    services.spend.set_cap("global", None, "day", max_usd=0.000001)
    reply = chat(client, FACT, data_class="public")
    assert reply.status_code == 429 and reply.json()["error"]["code"] == "spend_cap_exceeded"
    assert doubles[REMOTE].requests == []  # refused before dispatch, and not routed around
    services.spend.set_cap("global", None, "day", max_usd=None)
    services.spend.set_cap("global", None, "day", max_tokens=5)
    services.settings.router.candidates = [SMALL]
    assert chat(client, FACT).status_code == 429 and doubles[SMALL].requests == []


def test_streamed_auto_falls_over_before_the_first_event(routed):
    client, services, doubles = routed
    doubles[SMALL].function = lambda r: (_ for _ in ()).throw(ModelUnavailableError("overloaded"))
    with client.stream("POST", "/v1/chat/completions", json={"model": "auto", "stream": True, "messages": [
            {"role": "user", "content": FACT}]}) as reply:
        assert reply.status_code == 200 and reply.headers["X-Sovereign-Route-Model"] == MEDIUM
        body = "".join(reply.iter_text())
    chunks = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "medium"
    assert {c["model"] for c in chunks} == {MEDIUM}


def test_escalation_on_a_failed_check_is_reported_with_its_cost(routed):
    client, services, doubles = routed
    services.settings.router.escalate = True
    doubles[SMALL].function = lambda r: text_response("")
    reply = chat(client, FACT).json()
    assert reply["routing"]["model"] == MEDIUM and reply["routing"]["escalated_from"] == SMALL
    assert reply["choices"][0]["message"]["content"] == "medium"
    costs = client.get("/v1/costs").json()["escalations"]
    assert costs["routed"] == 1 and costs["escalated"] == 1 and costs["rate"] == 1.0
    doubles[SMALL].function = lambda r: text_response("19")
    assert chat(client, SUM).json()["routing"]["escalated_from"] is None  # a good answer is not escalated
    assert client.get("/v1/costs").json()["escalations"]["escalated"] == 1


def test_agent_config_model_auto_is_routed(tmp_path, monkeypatch, run_async):
    from sovereign.agent import AllowAll, Runner
    from sovereign.agent.agent import Agent

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER)
    doubles = _serve(services)
    runner = Runner(services, approver=AllowAll())
    result = run_async(runner.run(Agent(name="helper", model="auto", tools=[], verify="off"), FACT))
    assert result.ok and doubles[SMALL].requests  # a factoid goes to the small tier
    decision = services.audit.entries(kind="router.decision")[-1].data
    assert decision["agent"] == "helper" and decision["model"] == SMALL
    assert runner.store.get(result.run_id).model == SMALL
    services.close()


def test_cli_chat_model_auto(tmp_path, monkeypatch):
    from sovereign.cli.chat import chat_loop

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER)
    doubles = _serve(services)
    lines = iter([FACT, "/exit"])

    async def fake_read(prompt):
        return next(lines)

    monkeypatch.setattr("sovereign.cli.chat._read_line", fake_read)
    from sovereign.cli.common import console

    with console.capture() as captured:
        asyncio.run(chat_loop(services, model="auto", think=False, max_tokens=32))
    assert f"→ {SMALL}, effort none" in captured.get() and "small" in captured.get()
    assert doubles[SMALL].requests
    services.close()


def test_policy_refusal_through_the_cli_run(tmp_path, monkeypatch):
    from sovereign.cli.main import app

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[router]\ncandidates = ["deepseek-v4-flash"]\n')
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    result = CliRunner().invoke(app, ["run", "--model", "auto", "What is 2+2?"])
    assert result.exit_code == 1 and "never leaves this machine" in result.output


class _Backend:
    """A real OpenAI-compatible HTTP backend on loopback that can be killed and restarted."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "loopback"},
                                                "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._make = lambda port: http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._threading = threading
        self.server = self._make(0)
        self.port = self.server.server_port
        self._start()

    def _start(self) -> None:
        self._threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def restart(self) -> None:
        self.server = self._make(self.port)
        self._start()


def test_a_killed_http_backend_fails_over_cools_down_and_recovers(tmp_path, monkeypatch, run_async):
    from sovereign.kernel.openai_backend import OpenAICompatibleModel

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", f'[router]\ncandidates = ["peer", "{MEDIUM}"]\n')
    _serve(services)
    backend = _Backend()
    spec = ModelSpec("peer", "openai", tier="small", jurisdiction="local", base_url=f"http://127.0.0.1:{backend.port}/v1")
    services.register(spec, OpenAICompatibleModel(spec, services.egress, timeout=5))
    now = [0.0]
    services.router.breakers = Breakers(2, 30.0, clock=lambda: now[0])
    principal = services.keys.local_principal()
    request = ChatRequest(model="auto", messages=[Message(role="user", content=FACT)], max_tokens=8)

    def ask():
        return run_async(services.router.complete(request, principal))

    assert ask()[1].model == "peer"  # on loopback: allowed for private data, and first (small tier)
    backend.kill()
    for _ in range(2):
        response, decision, _ = ask()
        assert decision.model == MEDIUM and decision.tried[0]["model"] == "peer"
    assert services.router.breakers.status()["peer"]["open"]
    assert ask()[1].tried == []  # cooling down: not tried
    backend.restart()
    now[0] += 31
    response, decision, _ = ask()
    assert decision.model == "peer" and response.message.content == "loopback"
    backend.kill()
    services.close()
