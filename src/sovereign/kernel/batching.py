"""Several sequences decoded together in one llama.cpp context (the building block of continuous
batching), through llama-cpp-python's low-level API.

``BatchedDecoder`` owns a second context on an already loaded model, with ``streams`` sequence
slots sharing one unified KV cache. ``generate`` prefills every prompt (chunked to the batch
size, each sequence under its own id), then decodes one token for every live sequence per
``llama_decode`` call, greedily, until each hits an end-of-generation token or its limit. One
decode step for many sequences costs little more than for one on a memory-bound CPU, which is
where the aggregate throughput comes from (``benchmarks/bench_batching.py``).

Not yet the serving path: ``LlamaCppModel`` still runs one request at a time; what joining
requests into this decoder needs (admission of new sequences between steps, grammars and
sampling per sequence, the prefix cache) is listed in BENCHMARKS.md.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

__all__ = ["BatchedDecoder", "BatchResult"]


@dataclass(slots=True)
class BatchResult:
    tokens: list[list[int]]
    prefill_s: float
    decode_s: float
    decode_steps: int
    decoded: int = 0
    """Tokens produced by the decode steps (the first token of each sequence comes from prefill)."""
    per_step: list[int] = field(default_factory=list)


class BatchedDecoder:
    """``streams`` sequences at once on ``llm``'s model (a loaded ``llama_cpp.Llama``)."""

    def __init__(self, llm: Any, *, streams: int, n_ctx_per_stream: int = 1024, n_batch: int = 512,
                 n_threads: int | None = None) -> None:
        if streams < 1:
            raise ValueError("streams must be >= 1")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = streams * n_ctx_per_stream
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = streams
        params.kv_unified = True
        threads = n_threads or llm.context_params.n_threads
        params.n_threads = params.n_threads_batch = threads
        self.streams, self.n_batch = streams, n_batch
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create the batched context")
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, streams)

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def _add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        b = self.batch
        i = b.n_tokens
        b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
        b.seq_id[i][0] = seq
        b.logits[i] = 1 if logits else 0
        b.n_tokens = i + 1
        return i

    def _decode(self) -> None:
        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed (KV cache full?)")

    def _argmax(self, index: int) -> int:
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, index)
        return int(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)).argmax())

    def _prefill(self, prompts: list[list[int]]) -> list[int]:
        """Every prompt into the cache; returns each sequence's first generated token."""
        first = [0] * len(prompts)
        jobs = [(seq, pos, tok, pos == len(p) - 1) for seq, p in enumerate(prompts) for pos, tok in enumerate(p)]
        for start in range(0, len(jobs), self.n_batch):
            self.batch.n_tokens = 0
            wanted = [(self._add(tok, pos, seq, last), seq) for seq, pos, tok, last in jobs[start:start + self.n_batch]]
            self._decode()
            for index, seq in wanted:
                if self.batch.logits[index]:
                    first[seq] = self._argmax(index)
        return first

    def generate(self, prompts: list[list[int]], max_tokens: int, *, stop_at_eog: bool = True) -> BatchResult:
        """Greedy continuations of ``prompts`` (at most ``streams`` of them), decoded together."""
        if not prompts or len(prompts) > self.streams:
            raise ValueError(f"between 1 and {self.streams} prompts")
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        started = time.perf_counter()
        nxt = self._prefill(prompts)
        prefill_s = time.perf_counter() - started
        out: list[list[int]] = [[t] for t in nxt]
        live = {seq for seq in range(len(prompts))
                if not (stop_at_eog and llama_cpp.llama_vocab_is_eog(self.vocab, nxt[seq])) and max_tokens > 1}
        positions = [len(p) for p in prompts]
        result = BatchResult(out, prefill_s, 0.0, 0)
        started = time.perf_counter()
        while live:
            self.batch.n_tokens = 0
            order = sorted(live)
            index = {seq: self._add(out[seq][-1], positions[seq], seq, True) for seq in order}
            self._decode()
            result.decode_steps += 1
            result.per_step.append(len(order))
            for seq in order:
                positions[seq] += 1
                token = self._argmax(index[seq])
                out[seq].append(token)
                result.decoded += 1
                if len(out[seq]) >= max_tokens or (stop_at_eog and llama_cpp.llama_vocab_is_eog(self.vocab, token)):
                    live.discard(seq)
        result.decode_s = time.perf_counter() - started
        return result
