"""One decoding pass over a llama.cpp context: sample, detokenize, honour stops, report text.

Runs on the backend's worker thread. Text is reported as it becomes final: a tail that could
still turn into a stop string is held back until it cannot, and a ``TextFilter`` (the tool-call
markup guard, the call collector) sees the text before the caller and may end the pass.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import llama_cpp

from sovereign.kernel.text import partial_suffix

if TYPE_CHECKING:
    from sovereign.kernel.logprobs import LogprobRecorder


@dataclass(slots=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    repeat_penalty: float = 1.05
    seed: int | None = None
    # Token id -> bias added to its logit before sampling; ``-inf`` bans the token.
    logit_bias: dict[int, float] | None = None


class TokenSource(Protocol):
    """Token ids, one at a time; ``close()`` stops producing them."""

    def __iter__(self) -> Iterator[int]: ...

    def close(self) -> None: ...


class TextFilter(Protocol):
    """Sees generated text first: returns what may be reported now; ``stopped`` ends the pass."""

    stopped: bool

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


@dataclass(slots=True)
class PassResult:
    """``text`` is what was reported; ``finish == "diverted"`` when the filter stopped the pass."""

    text: str
    completion_tokens: int
    finish: Literal["stop", "length", "cancelled", "diverted"]
    first_token_at: float | None = None


def decode_pass(
    llm: llama_cpp.Llama,
    tokens: list[int],
    *,
    max_tokens: int,
    sampling: Sampling,
    stop: list[str],
    grammar: llama_cpp.LlamaGrammar | None,
    on_text: Callable[[str], None],
    cancelled: Callable[[], bool],
    clock: Callable[[], float],
    text_filter: TextFilter | None = None,
    source: TokenSource | None = None,
    recorder: LogprobRecorder | None = None,
) -> PassResult:
    """Generate up to ``max_tokens`` after ``tokens``.

    Text that survives the stop strings goes through ``text_filter`` (when given) before
    ``on_text``; once the filter says ``stopped`` the pass ends with ``finish="diverted"`` and the
    caller takes another path. ``source`` (the batch engine's stream for ``tokens``, already
    sampled with ``sampling`` and ``grammar``) replaces ``llm``'s own decoding; ``llm`` then only
    detokenizes. With ``recorder``, each kept token's log probability is moved to its
    ``consumed`` before the text the token completes is reported (``source`` must then have been
    given the same recorder).
    """
    if source is not None:
        return _consume(llm, source, max_tokens, stop, on_text, cancelled, clock, text_filter, recorder)
    if sampling.seed is not None:
        llm.set_seed(sampling.seed)
    return _consume(llm, _generate(llm, tokens, sampling, grammar, recorder), max_tokens, stop, on_text, cancelled,
                    clock, text_filter, recorder)


def _generate(llm: llama_cpp.Llama, tokens: list[int], sampling: Sampling,
              grammar: llama_cpp.LlamaGrammar | None, recorder: LogprobRecorder | None = None) -> Iterator[int]:
    """``llm.generate`` (prefix reuse, evaluation) sampling with our own chain (``sampler_chain``).

    llama-cpp-python's ``generate`` builds its chain through ``Llama._init_sampler``, which takes
    no logit bias; the instance attribute set here shadows that method for this pass only, so both
    paths (serial and batched) sample with the same chain.
    """
    from sovereign.kernel.logprobs import logits_row
    from sovereign.kernel.sampler_chain import build_sampler

    llm._init_sampler = lambda **_ignored: build_sampler(llm, sampling, grammar)
    try:
        for token in llm.generate(tokens, temp=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                                  min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty, grammar=grammar):
            if recorder is not None:  # the row the token was sampled from: the next decode overwrites it
                recorder.record(logits_row(llm._ctx.ctx, -1, llm.n_vocab()), token)
            yield token
    finally:
        del llm._init_sampler


def _consume(
    llm: llama_cpp.Llama,
    generator: TokenSource,
    max_tokens: int,
    stop: list[str],
    on_text: Callable[[str], None],
    cancelled: Callable[[], bool],
    clock: Callable[[], float],
    text_filter: TextFilter | None,
    recorder: LogprobRecorder | None = None,
) -> PassResult:
    """Read tokens until a stop, the limit, cancellation or the filter ends the pass; closes ``generator``."""
    vocab = llm._model.vocab
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text, held = [], ""
    count, finish, first_at = 0, "length", None

    def report(piece: str) -> bool:
        """Pass ``piece`` on; True when the filter stopped the pass."""
        if text_filter is not None:
            piece = text_filter.feed(piece)
        if piece:
            text.append(piece)
            on_text(piece)
        return text_filter is not None and text_filter.stopped

    try:
        for token in generator:
            if first_at is None:
                first_at = clock()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            if recorder is not None:
                recorder.consume()
            held += decoder.decode(llm.detokenize([token]))
            hit = _find_stop(held, stop)
            if hit is not None:
                held = held[:hit]
                finish = "stop"
                break
            keep = max((partial_suffix(held, s) for s in stop), default=0)
            ready, held = held[: len(held) - keep], held[len(held) - keep:]
            if ready and report(ready):
                return PassResult("".join(text), count, "diverted", first_at)
            if count >= max_tokens:
                break
            if cancelled():
                finish = "cancelled"
                break
    finally:
        generator.close()
    tail = held + decoder.decode(b"", final=True)
    if finish == "length" and any(partial_suffix(tail, s) == len(tail) for s in stop if tail):
        tail = ""  # cut off in the middle of a stop string: it is not content
    if tail and report(tail):
        return PassResult("".join(text), count, "diverted", first_at)
    if text_filter is not None and (rest := text_filter.flush()):
        text.append(rest)
        on_text(rest)
    return PassResult("".join(text), count, finish, first_at)


def _find_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
