"""``model: "auto"`` on the real embedded models: the router sends a factoid where the shipped
profiles measured it quickest at full accuracy (the 1.5B, without reasoning: 24/24 against the
0.5B's 18/24), the answer is right, and its ledger row carries an energy cost; a local native
thinker's reasoning is held to its budget."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from sovereign.config import DEFAULT_MODEL, TOOLS_MODEL, load_settings
from sovereign.kernel.messages import ChatRequest, Message, Thinking
from sovereign.server.app import create_app
from sovereign.server.bootstrap import bootstrap_admin_key
from sovereign.services import Services
from tests.conftest import ADMIN_KEY, ensure_shared, shared_registry

pytestmark = pytest.mark.integration


def test_model_auto_on_the_embedded_model(home, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = Services.open(load_settings(home), progress=False)
    bootstrap_admin_key(services, ADMIN_KEY)
    try:
        with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            reply = client.post("/v1/chat/completions", json={"model": "auto", "max_tokens": 8, "temperature": 0,
                                                              "messages": [{"role": "user", "content":
                                                                            "What is the capital of France? One word."}]})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["routing"]["model"] == TOOLS_MODEL and body["routing"]["effort"] == "none"
            assert "measured on factoid" in body["routing"]["reason"] and DEFAULT_MODEL in body["routing"]["plan"]
            assert "paris" in body["choices"][0]["message"]["content"].lower()
            row = services.ledger.recent(1)[0]
            assert row["model"] == TOOLS_MODEL and row["cost_kind"] == "energy"
            assert row["cost_usd"] > 0 and row["energy_j"] > 0 and body["cost_usd"] == pytest.approx(row["cost_usd"])
    finally:
        services.close()


def test_native_thinker_reasoning_is_held_to_its_budget(tmp_path):
    from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions

    spec = replace(shared_registry().get(DEFAULT_MODEL), native_thinking=True)  # treated as a native thinker
    model = LlamaCppModel(spec, ensure_shared(DEFAULT_MODEL), LlamaOptions(n_ctx=2048))
    model.load()
    try:
        request = ChatRequest(model=spec.name, messages=[Message(role="user", content="What is 17 + 25?")],
                              max_tokens=24, temperature=0, thinking=Thinking(True, 12))
        reply = asyncio.run(model.complete(request))
        assert 0 < reply.usage.reasoning_tokens <= 12
        assert reply.message.reasoning_content and "<think>" not in (reply.message.content or "")
        instant = asyncio.run(model.complete(replace(request, thinking=Thinking(False))))
        assert instant.usage.reasoning_tokens == 0 and "think>" not in (instant.message.content or "")
    finally:
        model.close()


def test_escalation_from_the_small_to_the_medium_local_model(home, embedded_model, embedded_model_large):
    """A low-confidence answer of the 0.5B (small tier) is asked again of the 1.5B (medium tier);
    the decision, the audit log and the cost summary report it, with both calls' energy costs."""
    from sovereign.config import TOOLS_MODEL
    from sovereign.finops.reports import CostFilter
    from sovereign.finops.summary import escalations

    services = Services.open(load_settings(home), progress=False)  # candidates: the two local tiers
    services.models[DEFAULT_MODEL], services.models[TOOLS_MODEL] = embedded_model, embedded_model_large
    try:
        # a passage to read: the shipped profiles measured the 0.5B quickest at full accuracy there
        request = ChatRequest(model="auto", max_tokens=8, temperature=0, messages=[Message(
            role="user", content='Passage: "I am not sure."\nRepeat the passage exactly and write nothing else.')])
        response, decision, cost = asyncio.run(services.router.complete(request, services.keys.local_principal()))
        escalation = decision.escalation
        assert escalation is not None and escalation.source == DEFAULT_MODEL, decision.reason
        assert escalation.problem.startswith("low confidence") and escalation.to == TOOLS_MODEL
        assert decision.model == TOOLS_MODEL and response.model == TOOLS_MODEL
        assert escalation.first_cost_usd > 0 and escalation.extra_cost_usd > 0  # energy-priced local calls
        assert cost == pytest.approx(escalation.first_cost_usd + escalation.extra_cost_usd)
        assert [r["model"] for r in services.ledger.recent(2)] == [TOOLS_MODEL, DEFAULT_MODEL]
        report = escalations(services.db, CostFilter())
        assert report["escalated"] == 1 and report["spend_usd"] == pytest.approx(escalation.extra_cost_usd)
    finally:
        for name in (DEFAULT_MODEL, TOOLS_MODEL):
            services.models.pop(name, None)  # session-wide models: not closed with these services
        services.close()


def test_a_llama_server_killed_mid_answer_fails_over_cools_down_and_recovers(home, embedded_model, tmp_path):
    """A second, real backend (llama.cpp's own server on loopback) is SIGKILLed while it writes an
    answer: the same request is answered by the embedded model, the breaker keeps the dead server
    out, and once it is back and the cooldown is over a health probe lets it serve again."""
    from sovereign.kernel.openai_backend import OpenAICompatibleModel
    from sovereign.kernel.registry import ModelSpec
    from sovereign.router.breaker import Breakers
    from tests.conftest import SHARED_MODELS, free_port
    from tests.servers.llama_server import LlamaServer

    config = home / "config.toml"
    config.write_text(config.read_text() + f'\n[router]\ncandidates = ["peer", "{DEFAULT_MODEL}"]\n')
    server = LlamaServer(SHARED_MODELS / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", free_port(),
                         tmp_path / "llama-server.log").start()
    services = Services.open(load_settings(home), progress=False)
    services.models[DEFAULT_MODEL] = embedded_model
    try:
        spec = ModelSpec("peer", "openai", tier="small", jurisdiction="local", base_url=server.base_url,
                         remote_name="peer-model")
        services.register(spec, OpenAICompatibleModel(spec, services.egress, timeout=60))
        now = [0.0]
        services.router.breakers = Breakers(1, 30.0, clock=lambda: now[0])
        principal = services.keys.local_principal()

        def ask(text: str, max_tokens: int = 8) -> ChatRequest:
            return ChatRequest(model="auto", max_tokens=max_tokens, temperature=0,
                               messages=[Message(role="user", content=text)])

        async def killed_while_answering():
            answering = asyncio.ensure_future(services.router.complete(
                ask("Count from 1 to 300, one number per line.", max_tokens=400), principal))
            await asyncio.sleep(3)  # the server is writing the answer by now
            assert not answering.done()
            await asyncio.to_thread(server.kill)
            return await answering

        first = asyncio.run(services.router.complete(ask("What is the capital of France? One word."), principal))
        assert first[1].model == "peer" and "paris" in (first[0].message.content or "").lower()
        response, decision, _ = asyncio.run(killed_while_answering())
        assert decision.model == DEFAULT_MODEL and decision.tried[0]["model"] == "peer", decision.tried
        assert response.message.content  # answered by the embedded model, in the same request
        assert services.router.breakers.status()["peer"]["open"]
        cooling = asyncio.run(services.router.complete(ask("Say OK."), principal))[1]
        assert cooling.model == DEFAULT_MODEL and cooling.tried == []  # the dead server is not tried
        server.start()
        now[0] += 31
        back = asyncio.run(services.router.complete(ask("What is the capital of France? One word."), principal))[1]
        assert back.model == "peer" and back.tried == []
    finally:
        services.models.pop(DEFAULT_MODEL, None)  # session-wide model: not closed with these services
        services.close()
        server.stop()
