"""Thinking vs instant mode: the reason-then-answer scaffold and the splitter for native thinkers.

Models without native thinking get an explicit scaffold: an instruction to reason inside
``<think>…</think>``, a first decoding pass steered into that block, then a second pass for the
answer. Models that think natively emit ``<think>…</think>`` themselves; ``ThinkSplitter``
routes that text to ``reasoning_content`` so it never mixes with ``content``.
"""

from __future__ import annotations

from dataclasses import replace

from sovereign.kernel.text import partial_suffix
from sovereign.kernel.messages import REASONING_EFFORT_BUDGET, ChatRequest, Message, Thinking

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
DEFAULT_BUDGET = REASONING_EFFORT_BUDGET["medium"]
SCAFFOLD_INSTRUCTION = (
    "Before answering, think step by step inside <think></think>: restate the task, work it "
    "out, check the result. Then give only the final answer after </think>."
)


def thinking_from_request(
    reasoning_effort: str | None, thinking: dict | None, *, default_enabled: bool = False
) -> Thinking:
    """Resolve OpenAI's ``reasoning_effort`` and the ``thinking: {type, budget_tokens}`` switch."""
    if thinking is not None:
        kind = thinking.get("type", "enabled")
        if kind == "disabled":
            return Thinking(enabled=False)
        budget = thinking.get("budget_tokens")
        return Thinking(enabled=True, budget_tokens=int(budget) if budget else DEFAULT_BUDGET)
    if reasoning_effort is not None:
        budget = REASONING_EFFORT_BUDGET.get(reasoning_effort, 0)
        return Thinking(enabled=budget > 0, budget_tokens=budget or None)
    return Thinking(enabled=default_enabled, budget_tokens=DEFAULT_BUDGET if default_enabled else None)


def with_scaffold_instruction(request: ChatRequest) -> list[Message]:
    """The request's messages with the reasoning instruction added to the system prompt."""
    messages = list(request.messages)
    if messages and messages[0].role == "system":
        first = messages[0]
        messages[0] = replace(first, content=f"{first.content or ''}\n\n{SCAFFOLD_INSTRUCTION}".strip())
    else:
        messages.insert(0, Message(role="system", content=SCAFFOLD_INSTRUCTION))
    return messages


class ThinkSplitter:
    """Split a stream of text pieces into (reasoning, content) around ``<think>…</think>``."""

    def __init__(self, *, inside: bool = False) -> None:
        self._inside = inside
        self._started = inside
        self._pending = ""

    def feed(self, piece: str) -> tuple[str, str]:
        self._pending += piece
        reasoning, content = "", ""
        while self._pending:
            if not self._started:
                head = self._pending.lstrip()
                if head.startswith(THINK_OPEN):
                    self._pending = head[len(THINK_OPEN):]
                    self._inside = self._started = True
                    continue
                if THINK_OPEN.startswith(head):
                    break  # could still become <think>
                self._started = True
                continue
            marker = THINK_CLOSE if self._inside else None
            if marker is None:
                content += self._pending
                self._pending = ""
                break
            index = self._pending.find(marker)
            if index >= 0:
                reasoning += self._pending[:index]
                self._pending = self._pending[index + len(marker):].lstrip("\n")
                self._inside = False
                continue
            keep = partial_suffix(self._pending, marker)
            reasoning += self._pending[: len(self._pending) - keep]
            self._pending = self._pending[len(self._pending) - keep:]
            break
        return reasoning, content

    def flush(self) -> tuple[str, str]:
        rest, self._pending = self._pending, ""
        return (rest, "") if self._inside else ("", rest)


class MarkerStripper:
    """Remove stray ``<think>``/``</think>`` markers from streamed answer text.

    Small models sometimes echo the scaffold's markers in their answer; they are never content.
    """

    MARKERS = (THINK_OPEN, THINK_CLOSE)

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, piece: str) -> str:
        text = self._pending + piece
        for marker in self.MARKERS:
            text = text.replace(marker, "")
        keep = max(partial_suffix(text, marker) for marker in self.MARKERS)
        self._pending = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep] if keep else text

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest


class ScaffoldSplitter:
    """For a scaffolded remote model: split off the ``<think>`` block, then strip stray markers."""

    def __init__(self) -> None:
        self._splitter = ThinkSplitter()
        self._stripper = MarkerStripper()

    def feed(self, piece: str) -> tuple[str, str]:
        reasoning, content = self._splitter.feed(piece)
        return reasoning, self._stripper.feed(content)

    def flush(self) -> tuple[str, str]:
        reasoning, content = self._splitter.flush()
        return reasoning, self._stripper.feed(content) + self._stripper.flush()
