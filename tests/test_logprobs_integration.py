"""Token log probabilities on the real embedded model, on both decoding paths (serial and
continuous batching): they are the model's own, in order, and the top alternatives are sorted."""

from __future__ import annotations

import math

import pytest

from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.protocol import collect_stream

pytestmark = pytest.mark.integration

QUESTION = [Message(role="user", content="What is the capital of France? One word.")]


def _check(response, top: int) -> None:
    entries = response.logprobs
    assert entries and len(entries) == response.usage.completion_tokens
    assert "".join(e.token for e in entries).strip().startswith(response.message.content.strip()[:3])
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top) == top
        alternatives = [logprob for _, logprob in entry.top]
        assert alternatives == sorted(alternatives, reverse=True)
        assert entry.logprob >= alternatives[-1] - 1e-6 or entry.token not in dict(entry.top)
    assert math.exp(entries[0].logprob) > 0.5  # "Paris" is the likely answer, not a tie


def test_logprobs_on_the_batched_path(embedded_model, run_async):
    request = ChatRequest(model=embedded_model.name, messages=QUESTION, max_tokens=8, temperature=0,
                          logprobs=True, top_logprobs=3)
    response = run_async(embedded_model.complete(request))
    assert "paris" in response.message.content.lower()
    _check(response, 3)
    streamed = run_async(collect_stream(embedded_model.name, embedded_model.stream(request)))
    assert [e.token for e in streamed.logprobs] == [e.token for e in response.logprobs]
    plain = run_async(embedded_model.complete(ChatRequest(model=embedded_model.name, messages=QUESTION, max_tokens=8,
                                                          temperature=0)))
    assert plain.logprobs is None


def test_logprobs_on_the_serial_path(models_dir, run_async, tmp_path):
    from sovereign.config import DEFAULT_MODEL
    from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions
    from tests.conftest import ensure_shared, shared_registry

    model = LlamaCppModel(shared_registry().get(DEFAULT_MODEL), ensure_shared(DEFAULT_MODEL),
                          LlamaOptions(n_ctx=1024, parallel=1))
    model.load()
    try:
        response = run_async(model.complete(ChatRequest(model=model.name, messages=QUESTION, max_tokens=8,
                                                        temperature=0, logprobs=True, top_logprobs=2)))
    finally:
        model.close()
    assert "paris" in response.message.content.lower()
    _check(response, 2)
