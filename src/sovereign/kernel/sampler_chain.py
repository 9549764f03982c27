"""One request's sampler chain, built the way llama-cpp-python's ``Llama.generate`` builds it.

The batched path (``kernel/batching.py``) samples each sequence with its own chain, so that a
request decoded next to others is sampled exactly as the serial path would sample it: repetition
penalty over the last 64 tokens (after any logit bias), the grammar when given, then greedy at temperature 0, else
top-k, typical (off), top-p, min-p, temperature and a seeded draw.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaSampler

from sovereign.kernel.decoding import Sampling

__all__ = ["build_sampler"]


def build_sampler(llm: Any, sampling: Sampling, grammar: llama_cpp.LlamaGrammar | None = None) -> LlamaSampler:
    """A fresh chain for one sequence on ``llm``'s model (a loaded ``llama_cpp.Llama``)."""
    chain = LlamaSampler()
    if sampling.logit_bias:
        chain.add_logit_bias(llm.n_vocab(), sampling.logit_bias)
    chain.add_penalties(n_vocab=llm.n_vocab(), penalty_last_n=llm.last_n_tokens_size,
                        penalty_repeat=sampling.repeat_penalty, penalty_freq=0.0, penalty_present=0.0)
    if grammar is not None:
        chain.add_grammar(llm._model, grammar)
    seed = llama_cpp.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed
    if sampling.temperature < 0.0:
        chain.add_dist(seed)
    elif sampling.temperature == 0.0:
        chain.add_greedy()
    else:
        chain.add_top_k(sampling.top_k)
        chain.add_typical(1.0, 1)
        chain.add_top_p(sampling.top_p, 1)
        chain.add_min_p(sampling.min_p, 1)
        chain.add_temp(sampling.temperature)
        chain.add_dist(seed)
    return chain
