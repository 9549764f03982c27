"""Local token counts for calls whose server reported none (flagged ``Usage.estimated``).

The estimate uses a real tokenizer when one is at hand: the vocabulary of a local GGUF model,
loaded by llama.cpp with ``vocab_only`` (no weights, a fraction of a second, once). Without one
it falls back to a character heuristic. Either way the figure is an estimate, never silence: a
remote endpoint that omits ``usage`` must not make budgets and caps count zero.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sovereign.kernel.messages import Message, ToolSpec, Usage

# Chat templates add a few tokens per message (role header, end marker) and per reply.
_PER_MESSAGE = 4
_PER_REPLY = 3
# Used only without a tokenizer: English prose and code average about 4 characters a token.
_CHARS_PER_TOKEN = 4.0


def heuristic_count(text: str) -> int:
    """About 4 characters a token; at least one token for any non-empty text."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN) if text else 0


class VocabCounter:
    """Counts tokens with a GGUF model's own tokenizer; loads the vocabulary on first use.

    If the file is missing or cannot be read, counts with ``heuristic_count`` instead and says so
    in ``exact``.
    """

    def __init__(self, gguf_path: Path) -> None:
        self.path = gguf_path
        self._llm: Any = None
        self._failed = False
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        return self._load() is not None

    def _load(self) -> Any:
        with self._lock:
            if self._llm is None and not self._failed:
                try:
                    import llama_cpp
                    from llama_cpp._internals import LlamaModel

                    if not self.path.is_file():
                        raise FileNotFoundError(self.path)
                    params = llama_cpp.llama_model_default_params()
                    params.vocab_only = True  # the tokenizer only: no weights, no context
                    self._llm = LlamaModel(path_model=str(self.path), params=params, verbose=False)
                except Exception:  # any failure: fall back to the heuristic, never break the call
                    self._failed = True
            return self._llm

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        llm = self._load()
        if llm is None:
            return heuristic_count(text)
        with self._lock:
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def _message_text(message: Message) -> str:
    parts = [message.content or ""]
    parts += [call.name + call.arguments for call in message.tool_calls]
    return "".join(parts)


def estimate_usage(
    count: Callable[[str], int],
    messages: Iterable[Message],
    tools: Iterable[ToolSpec],
    completion: Iterable[str],
    reasoning: str = "",
) -> Usage:
    """Usage estimated locally: the prompt as sent (messages and tool definitions), the reply."""
    messages = list(messages)
    prompt = sum(count(_message_text(m)) + _PER_MESSAGE for m in messages) + _PER_REPLY
    tool_json = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    if tool_json:
        prompt += count(json.dumps(tool_json))
    reasoning_tokens = count(reasoning)
    completion_tokens = count("".join(completion)) + reasoning_tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion_tokens, reasoning_tokens=reasoning_tokens,
                 requests=1, estimated=True)
