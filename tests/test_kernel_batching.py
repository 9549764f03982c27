"""Sequences decoded together in one llama.cpp context (``kernel/batching.py``) on the real
0.5B model: each stream gets the same greedy tokens as it does decoded alone, and one decode
step serves every live stream."""

from __future__ import annotations

import pytest

from sovereign.kernel.batching import BatchedDecoder

pytestmark = pytest.mark.integration


def test_streams_decoded_together_match_each_alone(embedded_model):
    llm = embedded_model._llm  # the loaded llama_cpp.Llama the kernel serves from
    prompts = [llm.tokenize(b"The capital of France is"), llm.tokenize(b"def add(a, b):\n    return")]
    together = BatchedDecoder(llm, streams=2, n_ctx_per_stream=128)
    alone = BatchedDecoder(llm, streams=1, n_ctx_per_stream=128)
    try:
        both = together.generate(prompts, 6, stop_at_eog=False)
        singles = [alone.generate([p], 6, stop_at_eog=False).tokens[0] for p in prompts]
    finally:
        together.close()
        alone.close()
    assert both.tokens == singles
    assert both.per_step == [2] * 5 and both.decoded == 10  # every step decoded both streams
    extra = BatchedDecoder(llm, streams=2, n_ctx_per_stream=64)
    try:
        with pytest.raises(ValueError, match="between 1 and 2 prompts"):
            extra.generate(prompts * 2, 4)
    finally:
        extra.close()
