"""Continuous batching in the kernel (``kernel/batching.py``) on the real 0.5B model.

Outputs decoded together are compared with tolerance, not bit for bit: llama.cpp chooses its
matrix kernels by batch shape and (with repacked Q4_K weights) by a row's position in the batch,
so the same prompt's logits differ by a few tenths between layouts — even between two copies
of one prompt in one batch — and a greedy near-tie may flip. A real mix-up (wrong positions,
sequence ids, logits row, a stale cache) moves logits by whole units and changes the text, which
is what these tests catch.
"""

from __future__ import annotations

import asyncio
import ctypes
import time

import llama_cpp
import numpy as np
import pytest

from sovereign.kernel.decoding import Sampling
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.sampler_chain import build_sampler

pytestmark = pytest.mark.integration

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
OTHERS = ["def add(a, b):\n    return", "The capital of France is", "Roses are red, violets are"]


def _greedy(llm):
    return build_sampler(llm, Sampling(temperature=0.0, repeat_penalty=1.0))


def _tokens(llm, text: str) -> list[int]:
    return llm.tokenize(text.encode(), add_bos=True, special=True)


def _solo_logits(llm, tokens: list[int]) -> np.ndarray:
    """First-token logits from the plain (serial) path: the Llama's own context."""
    llm.reset()
    llm.eval(tokens)
    row = ctypes.cast(llama_cpp.llama_get_logits_ith(llm.ctx, -1), ctypes.POINTER(ctypes.c_float))
    logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()
    llm.reset()
    return logits


def _drain(stream) -> list[int]:
    return list(stream)


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def _wait_idle(engine, timeout: float = 60.0) -> None:
    _wait_for(lambda: engine.busy_slots == 0, timeout)


def test_first_token_logits_batched_match_the_plain_path(embedded_model):
    llm, engine = embedded_model._llm, embedded_model.engine
    prompts = [_tokens(llm, t) for t in [COUNTING, *OTHERS]]
    solo = [_solo_logits(llm, p) for p in prompts]
    seen: dict[int, np.ndarray] = {}
    streams = [engine.submit(p, sampler=_greedy(llm), max_tokens=3,
                             logits_hook=lambda row, i=i: seen.setdefault(i, row)) for i, p in enumerate(prompts)]
    for stream in streams:
        _drain(stream)
    for i, reference in enumerate(solo):
        assert int(seen[i].argmax()) == int(reference.argmax())
        assert np.abs(seen[i] - reference).max() < 1.5, f"prompt {i}: logits differ beyond rounding"
        top = set(np.argsort(reference)[-5:])
        assert len(top & set(np.argsort(seen[i])[-5:])) >= 4
    # What a mix-up would look like: another prompt's logits are far outside the tolerance.
    assert np.abs(solo[0] - solo[1]).max() > 5


def test_identical_prompts_in_one_batch_give_identical_streams(embedded_model):
    llm, engine = embedded_model._llm, embedded_model.engine
    prompt = _tokens(llm, COUNTING)
    streams = [engine.submit(prompt, sampler=_greedy(llm), max_tokens=8) for _ in range(3)]
    other = engine.submit(_tokens(llm, OTHERS[0]), sampler=_greedy(llm), max_tokens=8)
    outputs = [_drain(s) for s in streams]
    _drain(other)
    assert outputs[0] == outputs[1] == outputs[2]
    text = llm.detokenize(outputs[0]).decode()
    assert text.replace(" ", "").startswith("13,14,"), text


def test_concurrent_requests_are_decoded_in_shared_steps(embedded_model, run_async):
    engine = embedded_model.engine
    assert engine is not None and engine.slots == 4
    questions = ["Name three colours.", "What is 2 + 2?", "Say hello in French.", "Count from 1 to 5."]
    before = engine.stats.shared_steps, engine.stats.decode_steps

    async def ask_all():
        return await asyncio.gather(*[
            embedded_model.complete(ChatRequest(model="x", messages=[Message(role="user", content=q)],
                                                max_tokens=8, temperature=0)) for q in questions])

    replies = run_async(ask_all())
    shared = engine.stats.shared_steps - before[0]
    steps = engine.stats.decode_steps - before[1]
    # Four requests of up to 8 tokens one after another would take >= 4 x 8 steps, none shared.
    assert shared >= 6 and steps < 4 * 8, (shared, steps)
    for reply in replies:
        assert reply.message.content and reply.message.content.strip()
        assert "<|im_end|>" not in reply.message.content and reply.finish_reason in ("stop", "length")
        assert reply.usage.completion_tokens <= 8


def test_a_closed_stream_frees_its_slot_for_a_waiting_one(embedded_model):
    llm, engine = embedded_model._llm, embedded_model.engine
    _wait_idle(engine)
    long = [engine.submit(_tokens(llm, f"Write a long story about {t}."), sampler=_greedy(llm), max_tokens=400)
            for t in ("a cat", "a ship", "a tree", "a city")]
    waiting = engine.submit(_tokens(llm, COUNTING), sampler=_greedy(llm), max_tokens=4)
    _wait_for(lambda: engine.busy_slots == 4)
    next(long[0])
    long[0].close()
    assert len(_drain(waiting)) == 4  # admitted into the freed slot while the others still run
    assert engine.busy_slots == 3
    for stream in long[1:]:
        next(stream)
        stream.close()
    _wait_idle(engine)


def test_cancelling_a_request_mid_stream_frees_its_slot(embedded_model, run_async):
    engine = embedded_model.engine
    _wait_idle(engine)

    async def read_two_then_leave():
        request = ChatRequest(model="x", messages=[Message(role="user", content="Write a long poem about rain.")],
                              max_tokens=300, temperature=0)
        stream = embedded_model.stream(request)
        pieces = []
        async for event in stream:
            pieces.append(event)
            if len(pieces) == 2:
                break
        await stream.aclose()
        return pieces

    assert len(run_async(read_two_then_leave())) == 2
    _wait_idle(engine, timeout=30)
