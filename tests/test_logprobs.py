"""Token log probabilities: ``logprobs`` / ``top_logprobs`` on ``/v1/chat/completions`` (OpenAI's
shape, streamed and not), and the router's confidence check built on them (``[router]
min_confidence``) — with deterministic doubles; ``test_logprobs_integration.py`` runs the real
model."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient

from sovereign.kernel.messages import ChatResponse, Message, TokenLogprob
from sovereign.server.app import create_app
from sovereign.testing import FunctionModel, text_response
from tests.conftest import ADMIN_KEY, open_api_services
from tests.test_router_escalation import FACT, MEDIUM, ROUTER, SMALL, _serve, answering, api, chat  # noqa: F401


def unsure(text: str, probability: float) -> ChatResponse:
    """An answer whose every token had ``probability`` (and a runner-up)."""
    logprob = math.log(probability)
    entries = [TokenLogprob(token=t, logprob=logprob, bytes=list(t.encode()), top=[(t, logprob), ("x", -5.0)])
               for t in text.split()]
    return ChatResponse(model="scripted", message=Message(role="assistant", content=text), logprobs=entries)


@pytest.fixture
def confident(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER + "min_confidence = 0.5\n")
    small, medium = answering("Lyon"), answering("Paris")
    _serve(services, small, medium)
    with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client, services, small, medium
    services.close()


def test_a_low_probability_answer_escalates_and_the_check_asks_for_logprobs(confident):
    client, services, small, medium = confident
    small.function = lambda request: unsure("Lyon it is", 0.2)
    reply = client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": FACT}]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == "Paris"
    escalation = body["routing"]["escalation"]
    assert escalation["to"] == MEDIUM and "mean token probability 0.20 is below 0.5" in escalation["problem"]
    assert small.requests[-1].logprobs  # the router asked for them to check the answer
    assert body["choices"][0]["logprobs"] is None  # ... and the caller, who did not, gets none


def test_a_confident_answer_stands_and_a_caller_asking_gets_the_logprobs(confident):
    client, services, small, medium = confident
    small.function = lambda request: unsure("Paris", 0.9)
    reply = chat(client, FACT, logprobs=True, top_logprobs=2).json()
    assert reply["routing"]["escalation"] is None and reply["routing"]["model"] == SMALL
    content = reply["choices"][0]["logprobs"]["content"]
    assert content[0]["token"] == "Paris" and content[0]["logprob"] == pytest.approx(math.log(0.9))
    assert content[0]["top_logprobs"][1] == {"token": "x", "logprob": -5.0, "bytes": [120]}
    assert not medium.requests


def test_without_min_confidence_no_logprobs_are_asked_for(api):
    client, services, small, medium = api
    chat(client, FACT)
    assert small.requests and not small.requests[-1].logprobs


@pytest.fixture
def plain(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home")
    double = FunctionModel(lambda request: unsure("Paris is", 0.5) if request.logprobs else text_response("Paris is"))
    double.name = "scripted"
    from sovereign.kernel.registry import ModelSpec

    services.register(ModelSpec("scripted", "in_process", tier="small", licence="Apache-2.0", jurisdiction="local"),
                      double)
    with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client, double
    services.close()


def _ask(client, **extra):
    return client.post("/v1/chat/completions", json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}],
                                                     **extra})


def test_logprobs_in_the_openai_shape_streamed_and_not(plain):
    client, double = plain
    assert _ask(client).json()["choices"][0]["logprobs"] is None
    body = _ask(client, logprobs=True, top_logprobs=1).json()
    tokens = body["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == ["Paris", "is"] and body["choices"][0]["logprobs"]["refusal"] is None
    assert double.requests[-1].top_logprobs == 1
    streamed = _ask(client, logprobs=True, stream=True)
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    seen = [t["token"] for c in chunks for choice in c["choices"] if choice.get("logprobs")
            for t in choice["logprobs"]["content"]]
    assert seen == ["Paris", "is"]


def test_bad_logprob_settings_are_a_400_naming_the_field(plain):
    client, _ = plain
    alone = _ask(client, top_logprobs=3)
    assert alone.status_code == 400 and alone.json()["error"]["param"] == "top_logprobs"
    too_many = _ask(client, logprobs=True, top_logprobs=21)
    assert too_many.status_code == 400 and "top_logprobs" in too_many.text
