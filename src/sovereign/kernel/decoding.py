"""One decoding pass over a llama.cpp context: sample, detokenize, honour stops, report text.

Runs on the backend's worker thread. Text is reported as it becomes final: a tail that could
still turn into a stop string is held back until it cannot.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import llama_cpp

from sovereign.kernel.text import partial_suffix


@dataclass(slots=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    repeat_penalty: float = 1.05
    seed: int | None = None


@dataclass(slots=True)
class PassResult:
    text: str
    completion_tokens: int
    finish: Literal["stop", "length", "cancelled", "diverted"]
    first_token_at: float | None = None
    stops_seen: list[str] = field(default_factory=list)


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
    divert: Callable[[str], bool | None] | None = None,
) -> PassResult:
    """Generate up to ``max_tokens`` after ``tokens``.

    ``divert`` sees the text so far while it returns None (undecided, text held back); True
    stops the pass with ``finish="diverted"`` (the caller takes another path), False releases
    the held text and streams on.
    """
    if sampling.seed is not None:
        llm.set_seed(sampling.seed)
    vocab = llm._model.vocab
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    generator = llm.generate(
        tokens,
        temp=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repeat_penalty=sampling.repeat_penalty,
        grammar=grammar,
    )
    text, held = [], ""
    count, finish, first_at = 0, "length", None
    deciding = divert is not None
    try:
        for token in generator:
            if first_at is None:
                first_at = clock()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            held += decoder.decode(llm.detokenize([token]))
            hit = _find_stop(held, stop)
            if hit is not None:
                held = held[:hit]
                finish = "stop"
                break
            if deciding:
                verdict = divert("".join(text) + held)
                if verdict is None:
                    if count >= max_tokens:
                        break
                    continue
                if verdict:
                    return PassResult("".join(text) + held, count, "diverted", first_at)
                deciding = False
            keep = max((partial_suffix(held, s) for s in stop), default=0)
            ready, held = held[: len(held) - keep], held[len(held) - keep:]
            if ready:
                text.append(ready)
                on_text(ready)
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
    if tail:
        text.append(tail)
        on_text(tail)
    return PassResult("".join(text), count, finish, first_at)


def _find_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
