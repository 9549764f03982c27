"""Continuous batching: many requests decoded together in one llama.cpp context.

``BatchEngine`` owns a second context on an already loaded model, with ``slots`` sequence slots
sharing one unified KV cache (``slots × n_ctx_per_slot`` cells, so a slot never runs short), and
one scheduler thread. ``submit`` hands it a prompt and a sampler chain and returns a
``SeqStream`` of generated token ids. Each step the scheduler admits waiting sequences into free
slots, puts one token for every generating sequence and, in the room left, chunks of prompts
still being read into one ``llama_decode``, then samples every sequence whose logits came out.
Sequences join and leave between steps; one that ends (end-of-generation token, ``max_tokens``,
its slot's context) or is closed by its reader frees its slot at once.

A free slot keeps its KV cache: the next prompt goes to the free slot sharing the longest prefix
with what it holds, and only the rest is read (``SeqStream.reused`` tokens were not).

Outputs match the serial path's up to float rounding, not bit for bit: llama.cpp picks matrix
kernels by batch shape (and with repacked weights by row position in the batch), so logits
differ by a few tenths between batch layouts and a greedy near-tie can go either way.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from sovereign.kernel.logprobs import logits_row

if TYPE_CHECKING:
    from sovereign.kernel.logprobs import LogprobRecorder

__all__ = ["BatchEngine", "BatchStats", "SeqStream"]

_END = object()
LogitsHook = Callable[[np.ndarray], None]


@dataclass(slots=True)
class BatchStats:
    """What the scheduler did so far: ``shared_steps`` are decode steps that carried several sequences."""

    decode_steps: int = 0
    shared_steps: int = 0
    most_sequences: int = 0
    tokens_generated: int = 0
    prompt_tokens_read: int = 0


@dataclass(slots=True)
class _Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV the slot holds, in order
    busy: bool = False
    last_used: int = 0


class SeqStream:
    """Token ids of one sequence as the engine samples them; ``close()`` leaves early."""

    def __init__(self, engine: BatchEngine, prompt: list[int], sampler: Any, max_tokens: int,
                 logits_hook: LogitsHook | None, recorder: LogprobRecorder | None = None) -> None:
        self.prompt, self.sampler, self.max_tokens, self.logits_hook = prompt, sampler, max_tokens, logits_hook
        self.recorder = recorder
        self.reused = 0
        """Prompt tokens found in the slot's cache (not read again); set when admitted."""
        self._engine = engine
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False
        self.slot: _Slot | None = None
        self.read = 0  # prompt tokens in the slot's cache
        self.pending: int | None = None  # last sampled token, fed at the next step
        self.generated = 0

    def __iter__(self) -> SeqStream:
        return self

    def __next__(self) -> int:
        item = self._out.get()
        if item is _END:
            self._out.put(_END)  # later calls keep raising StopIteration
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Leave now: the slot is freed before the next decode step."""
        if not self.closed:
            self.closed = True
            self._engine._wake()


class BatchEngine:
    """``slots`` sequences at once on ``llm``'s model (a loaded ``llama_cpp.Llama``)."""

    def __init__(self, llm: Any, *, slots: int, n_ctx_per_slot: int, n_batch: int = 512,
                 n_threads: int | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * n_ctx_per_slot
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = n_threads or llm.context_params.n_threads
        self.n_ctx_per_slot, self.n_batch = n_ctx_per_slot, n_batch
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create the batched context")
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._slots = [_Slot(i) for i in range(slots)]
        self._waiting: collections.deque[SeqStream] = collections.deque()
        self._active: list[SeqStream] = []
        self._cond = threading.Condition()
        self._closed = False
        self._clock = 0
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self._thread.start()

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def busy_slots(self) -> int:
        return sum(slot.busy for slot in self._slots)

    def submit(self, prompt: list[int], *, sampler: Any, max_tokens: int,
               logits_hook: LogitsHook | None = None, recorder: LogprobRecorder | None = None) -> SeqStream:
        """Queue ``prompt`` (at most ``n_ctx_per_slot - 1`` tokens); ``sampler`` is the sequence's own chain.

        ``logits_hook`` (for inspection) sees a copy of each row of logits before it is sampled;
        ``recorder`` is given each row with the token sampled from it (``kernel/logprobs.py``).
        """
        if not prompt or len(prompt) >= self.n_ctx_per_slot:
            raise ValueError(f"a prompt needs 1 to {self.n_ctx_per_slot - 1} tokens, got {len(prompt)}")
        stream = SeqStream(self, list(prompt), sampler, max(1, max_tokens), logits_hook, recorder)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batch engine is closed")
            self._waiting.append(stream)
            self._cond.notify()
        return stream

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        for stream in [*self._active, *self._waiting]:
            stream._out.put(_END)
        self._active.clear()
        self._waiting.clear()
        if self.ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # --- the scheduler thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._drop_closed()
                while not self._closed and not self._waiting and not self._active:
                    self._cond.wait()
                    self._drop_closed()
                if self._closed:
                    return
                self._admit()
            if not self._active:
                continue
            try:
                self._step()
            except Exception as exc:  # handed to every reader in the step; the engine keeps serving
                for stream in list(self._active):
                    self._release(stream, error=exc, forget=True)

    def _admit(self) -> None:
        """Waiting sequences into free slots, each where its prompt's longest cached prefix is."""
        while self._waiting and (free := [s for s in self._slots if not s.busy]):
            stream = self._waiting.popleft()
            if stream.closed:
                stream._out.put(_END)
                continue
            slot = max(free, key=lambda s: (_common(s.cached, stream.prompt), -s.last_used))
            keep = self._reuse(slot, stream.prompt)
            slot.busy, stream.slot, stream.read, stream.reused = True, slot, keep, keep
            self._active.append(stream)

    def _reuse(self, slot: _Slot, prompt: list[int]) -> int:
        """Trim ``slot``'s cache to its prefix of ``prompt``, or share a longer one another slot holds."""
        limit = len(prompt) - 1  # the last prompt token is always read: its logits are sampled
        keep = min(_common(slot.cached, prompt), limit)
        donor = max(self._slots, key=lambda s: _common(s.cached, prompt))
        shared = min(_common(donor.cached, prompt), limit)
        if donor is not slot and shared > keep:
            # Unified KV: the donor's cells are tagged with this sequence too, not copied.
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._memory, donor.seq_id, slot.seq_id, 0, shared)
            slot.cached[:] = prompt[:shared]
            return shared
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1)
        del slot.cached[keep:]
        return keep

    def _drop_closed(self) -> None:
        for stream in [s for s in self._active if s.closed]:
            self._release(stream)

    def _release(self, stream: SeqStream, *, error: BaseException | None = None, forget: bool = False) -> None:
        """End ``stream`` and free its slot; ``forget`` also drops the slot's cache (after a failure)."""
        if stream in self._active:
            self._active.remove(stream)
        slot = stream.slot
        if slot is not None:
            self._clock += 1
            slot.busy, slot.last_used = False, self._clock
            if forget:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.cached.clear()
        if error is not None:
            stream._out.put(error)
        stream._out.put(_END)

    def _step(self) -> None:
        """One ``llama_decode``: a token per generating sequence, then prompt chunks in the room left."""
        batch, rows, fed = self._batch, [], []
        batch.n_tokens = 0
        for stream in self._active:
            if stream.pending is not None:
                rows.append((stream, self._add(stream.pending, len(stream.slot.cached), stream.slot.seq_id, True)))
                fed.append((stream, [stream.pending]))
        for stream in self._active:
            room = self.n_batch - batch.n_tokens
            if stream.pending is not None or room <= 0:
                continue
            chunk = stream.prompt[stream.read: stream.read + room]
            base = len(stream.slot.cached)
            for offset, token in enumerate(chunk):
                last = stream.read + offset == len(stream.prompt) - 1
                index = self._add(token, base + offset, stream.slot.seq_id, last)
                if last:
                    rows.append((stream, index))
            stream.read += len(chunk)
            fed.append((stream, chunk))
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} on a batch of {batch.n_tokens} tokens")
        for stream, tokens in fed:
            stream.slot.cached.extend(tokens)
        self._count(fed)
        for stream, index in rows:
            self._sample(stream, index)

    def _add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        b = self._batch
        i = b.n_tokens
        b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
        b.seq_id[i][0] = seq
        b.logits[i] = 1 if logits else 0
        b.n_tokens = i + 1
        return i

    def _count(self, fed: list[tuple[SeqStream, list[int]]]) -> None:
        stats = self.stats
        stats.decode_steps += 1
        stats.shared_steps += len(fed) > 1
        stats.most_sequences = max(stats.most_sequences, len(fed))
        stats.prompt_tokens_read += sum(len(tokens) for stream, tokens in fed if stream.pending is None)

    def _sample(self, stream: SeqStream, index: int) -> None:
        if stream.closed:
            return
        if stream.logits_hook is not None:
            stream.logits_hook(logits_row(self.ctx, index, self._n_vocab).copy())
        token = llama_cpp.llama_sampler_sample(stream.sampler.sampler, self.ctx, index)
        if stream.recorder is not None:  # before the token is handed over and the row overwritten
            stream.recorder.record(logits_row(self.ctx, index, self._n_vocab), token)
        stream.generated += 1
        self.stats.tokens_generated += 1
        stream._out.put(token)
        full = len(stream.slot.cached) + 1 >= self.n_ctx_per_slot
        if llama_cpp.llama_vocab_is_eog(self._vocab, token) or stream.generated >= stream.max_tokens or full:
            self._release(stream)
        else:
            stream.pending = token


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
