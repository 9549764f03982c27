"""The OpenAI-compatible backend against a real llama.cpp server (``python -m llama_cpp.server``)
started on loopback, and its refusal to leave the machine when offline."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import free_port
from servers.llama_server import LlamaServer
from sovereign.config import DEFAULT_MODEL
from sovereign.errors import EgressDeniedError
from sovereign.governance.egress import EgressGate
from sovereign.kernel.messages import ChatRequest, Message, Thinking
from sovereign.kernel.openai_backend import OpenAICompatibleModel
from sovereign.kernel.registry import ModelSpec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama_server(models_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("llama-server") / "log.txt"
    server = LlamaServer(models_dir / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", free_port(), log).start()
    yield server.base_url
    server.stop()


def remote_spec(base_url: str, **extra) -> ModelSpec:
    return ModelSpec(name="peer", backend="openai", base_url=base_url, remote_name="peer-model", **extra)


def ask(text: str, **options) -> ChatRequest:
    return ChatRequest(model="peer", messages=[Message(role="user", content=text)], temperature=0, **options)


def test_complete_against_real_server(llama_server):
    model = OpenAICompatibleModel(remote_spec(llama_server), EgressGate(mode="offline"))
    reply = asyncio.run(model.complete(ask("What is the capital of France? One word.", max_tokens=10)))
    assert "paris" in reply.message.content.lower()
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_stream_against_real_server(llama_server):
    model = OpenAICompatibleModel(remote_spec(llama_server), EgressGate(mode="offline"))

    async def collect():
        return [event async for event in model.stream(ask("Count from 1 to 5.", max_tokens=30))]

    events = asyncio.run(collect())
    text = "".join(e.content or "" for e in events)
    assert "3" in text and len([e for e in events if e.content]) > 1
    assert events[-1].finish_reason in ("stop", "length")


def test_thinking_scaffold_on_a_non_thinking_remote(llama_server):
    model = OpenAICompatibleModel(remote_spec(llama_server), EgressGate(mode="offline"))
    reply = asyncio.run(model.complete(ask("What is 6 * 7?", max_tokens=200, thinking=Thinking(True, 150))))
    assert "<think>" not in (reply.message.content or "")
    assert reply.message.reasoning_content or reply.message.content


def test_remote_served_through_sovereign(llama_server, tmp_path, models_dir):
    """A user-configured OpenAI-compatible model is served by sovereign's own API."""
    import openai

    from conftest import LiveServer, make_home

    extra = f'\n[[models]]\nname = "peer"\nbackend = "openai"\nbase_url = "{llama_server}"\nremote_name = "peer-model"\njurisdiction = "local"\n'
    server = LiveServer(make_home(tmp_path / "home", models_dir, extra), "sk-peer-test-key").start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        reply = client.chat.completions.create(model="peer", messages=[{"role": "user", "content": "Say OK."}],
                                               temperature=0, max_tokens=5)
        assert reply.choices[0].message.content
        assert reply.usage.completion_tokens > 0
    finally:
        server.stop()


def test_offline_gate_refuses_remote_before_connecting(monkeypatch):
    attempted = []

    async def never(*args, **kwargs):  # pragma: no cover - must not be reached
        attempted.append(args)
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", never)
    spec = remote_spec("https://api.deepseek.com/v1")
    model = OpenAICompatibleModel(spec, EgressGate(mode="offline"))
    with pytest.raises(EgressDeniedError, match="offline"):
        asyncio.run(model.complete(ask("hi")))
    allow = OpenAICompatibleModel(spec, EgressGate(mode="allowlist", allow_hosts=["other.example"]))
    with pytest.raises(EgressDeniedError, match="allowlist"):
        asyncio.run(allow.complete(ask("hi")))
    assert attempted == []


def test_default_model_is_embedded():
    assert DEFAULT_MODEL == "qwen2.5-coder-0.5b-instruct"


def test_logprobs_pass_through_a_remote_backend(live_server):
    """A sovereign server is itself an OpenAI-compatible peer that reports log probabilities."""
    spec = ModelSpec(name="peer", backend="openai", base_url=live_server.base_url,
                     remote_name="qwen2.5-coder-0.5b-instruct")
    model = OpenAICompatibleModel(spec, EgressGate(mode="offline"), api_key=live_server.api_key)
    request = ask("What is the capital of France? One word.", max_tokens=8, logprobs=True, top_logprobs=2)
    reply = asyncio.run(model.complete(request))
    assert reply.logprobs and all(e.logprob <= 0 and len(e.top) == 2 for e in reply.logprobs)

    async def collect():
        return [event async for event in model.stream(request)]

    streamed = [entry.token for event in asyncio.run(collect()) for entry in event.logprobs]
    assert streamed == [entry.token for entry in reply.logprobs]
    assert asyncio.run(model.complete(ask("Hi", max_tokens=4))).logprobs is None
