"""Log probabilities of sampled tokens, read from the logits row each token was sampled from.

Both decoding paths hand the recorder the row and the token as soon as the token is sampled
(the serial path in ``decoding._generate``, the batch engine in its scheduler thread), so the
row is read before the next decode overwrites it and nothing is copied. The log probability is
the model's own (log-softmax of the raw logits), not the sampling distribution after
temperature, top-p or a grammar — as OpenAI reports it. ``decode_pass`` moves one recorded entry
to ``consumed`` per token it keeps, so a caller streaming text can send each piece with the
tokens read so far.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from collections import deque
from collections.abc import Callable

import llama_cpp
import numpy as np

from sovereign.kernel.messages import TokenLogprob

__all__ = ["MAX_TOP_LOGPROBS", "LogprobRecorder", "logits_row"]

MAX_TOP_LOGPROBS = 20


def logits_row(ctx, index: int, n_vocab: int) -> np.ndarray:
    """A view (no copy) of the logits llama.cpp holds for batch position ``index`` (-1: the last)."""
    row = ctypes.cast(llama_cpp.llama_get_logits_ith(ctx, index), ctypes.POINTER(ctypes.c_float))
    return np.ctypeslib.as_array(row, shape=(n_vocab,))


class LogprobRecorder:
    """Entries for the tokens of one pass; ``piece`` turns a token id into its bytes."""

    def __init__(self, piece: Callable[[int], bytes], top: int = 0) -> None:
        self.piece, self.top = piece, max(0, min(top, MAX_TOP_LOGPROBS))
        self._pending: deque[TokenLogprob] = deque()
        self._lock = threading.Lock()
        self.consumed: list[TokenLogprob] = []

    def record(self, row: np.ndarray, token: int) -> None:
        """The token sampled from ``row`` (raw logits over the vocabulary)."""
        row = row.astype(np.float64, copy=False)
        peak = float(row.max())
        log_total = peak + float(np.log(np.exp(row - peak).sum()))
        top: list[tuple[str, float]] = []
        if self.top:
            best = np.argpartition(-row, self.top)[: self.top]
            best = best[np.argsort(-row[best])]
            top = [(self._text(int(t)), float(row[t]) - log_total) for t in best]
        raw = self.piece(token)
        entry = TokenLogprob(token=self._decode(raw), logprob=float(row[token]) - log_total, bytes=list(raw), top=top)
        with self._lock:
            self._pending.append(entry)

    def consume(self) -> None:
        """The next recorded token was kept by the pass (it is part of the answer)."""
        with self._lock:
            if self._pending:
                self.consumed.append(self._pending.popleft())

    def _text(self, token: int) -> str:
        return self._decode(self.piece(token))

    @staticmethod
    def _decode(raw: bytes) -> str:
        return codecs.decode(raw, "utf-8", errors="replace")
