"""``GovernedEmbedder``: an embedding model behind the governed path.

An embedding call's size is known before it runs (the tokens of its inputs), so the path is the
chat one with an exact reservation instead of a worst case: authorise (role and the key's model
scope) → reserve the inputs' tokens and their price against every cap → encode → settle (ledger
row, settled reservation and ``model.call`` audit entry in one write) → observers. A call that
fails releases its reservation.

    governed = GovernedEmbedder(services.embedder, services.governor, CallScope(principal))
    result = await governed.embed(["some text"])   # CapExceededError (429) before encoding
    result.vectors, result.usage.prompt_tokens, result.cost_usd
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sovereign.governance.governor import CallScope, Governor
from sovereign.governance.journal import DirectJournal, Journal
from sovereign.kernel.messages import Timings, Usage

__all__ = ["EmbeddingResult", "Embeds", "GovernedEmbedder"]


class Embeds(Protocol):
    """What the governed path needs of an embedding model (``memory.embeddings.Embedder``)."""

    model_id: str
    dim: int

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def encode(self, texts: Sequence[str]) -> Any: ...

    def encode_ids(self, sequences: Sequence[Sequence[int]]) -> Any: ...


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: Any
    """``(len(inputs), dim)`` float32 array, unit length."""
    usage: Usage
    cost_usd: float


class GovernedEmbedder:
    """Embeddings on the governed path, for one ``scope`` (see the module docstring)."""

    def __init__(self, inner: Embeds, governor: Governor, scope: CallScope, *,
                 journal: Journal | None = None) -> None:
        self.inner = inner
        self.governor = governor
        self.scope = scope
        self.journal = journal or DirectJournal(governor.spend.db)

    @property
    def name(self) -> str:
        return self.inner.model_id

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Vectors of ``texts``; the tokens counted are the ones the model reads."""
        self.governor.authorize(self.scope, self.name)
        counts = await asyncio.to_thread(self.inner.count_tokens, texts)
        return await self._governed(sum(counts), lambda: self.inner.encode(texts))

    async def embed_ids(self, sequences: Sequence[Sequence[int]]) -> EmbeddingResult:
        """Vectors of token-id sequences (this model's tokenizer), each cut to the model's limit."""
        self.governor.authorize(self.scope, self.name)
        limit = getattr(self.inner, "max_tokens", None)
        tokens = sum(min(len(s), limit) if limit else len(s) for s in sequences)
        return await self._governed(tokens, lambda: self.inner.encode_ids(sequences))

    async def _governed(self, tokens: int, encode: Any) -> EmbeddingResult:
        usage = Usage(prompt_tokens=tokens, requests=1)
        cost = self.governor.prices(self.name).cost(cached_tokens=0, uncached_tokens=tokens, output_tokens=0)
        reservation = self.governor.reserve_amount(self.scope, cost, tokens, self.journal)
        started = time.perf_counter()
        try:
            vectors = await asyncio.to_thread(encode)
        except BaseException:
            self.governor.release(reservation)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        record = self.governor.settle(self.scope, reservation, self.name, usage,
                                      Timings(ttft_ms=elapsed, latency_ms=elapsed), self.journal)
        return EmbeddingResult(vectors=vectors, usage=usage, cost_usd=record.cost_usd)
