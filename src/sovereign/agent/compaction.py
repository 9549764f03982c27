"""Context management for small windows: when the transcript nears the model's context, older
steps are summarised. The summary is kept as a step; the summarised steps stay stored.

Before summarising, an optional ``before_compaction(facts)`` hook receives the facts about to
leave the transcript (tool results, answers), so memory can keep them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sovereign.agent.prompts import prompt
from sovereign.agent.steps import (
    ModelCallStep,
    NoticeStep,
    Step,
    SummaryStep,
    TaskStep,
    ToolResultStep,
    VerificationStep,
)
from sovereign.kernel.messages import ChatRequest, Message, ToolSpec

__all__ = [
    "BeforeCompaction",
    "CompactionPolicy",
    "TokenCounter",
    "estimate_tokens",
    "fixed_tokens",
    "message_tokens",
    "plan_compaction",
    "tools_tokens",
]

BeforeCompaction = Callable[[list[str]], Awaitable[None] | None]
TokenCounter = Callable[[str], int]

# Per-message overhead of chat templates (role markers, separators), and the fixed text a
# template adds when tools are present; generous on purpose, the budget relies on it.
_MESSAGE_OVERHEAD = 8
_TOOLS_OVERHEAD = 200
_THINKING_OVERHEAD = 64
_REQUEST_OVERHEAD = 16


@dataclass(kw_only=True, slots=True)
class CompactionPolicy:
    threshold: float = 0.75
    """Compact when the prompt passes this fraction of the context left after the completion."""
    keep_recent: int = 4
    """Steps kept word for word after a compaction."""
    summary_max_tokens: int = 256


def rough_count(text: str) -> int:
    """An upper estimate of tokens when no tokenizer is at hand (about 3 characters a token)."""
    return len(text) // 3 + 1


def message_tokens(message: Message, count: TokenCounter) -> int:
    """An upper estimate of one message's share of a prompt."""
    text = message.content or ""
    if message.tool_calls:
        text += "".join(call.name + call.arguments for call in message.tool_calls) + " " * 16
    return count(text) + _MESSAGE_OVERHEAD if text else _MESSAGE_OVERHEAD


def estimate_tokens(
    messages: list[Message], tools: list[ToolSpec], count: TokenCounter | None = None, *, thinking: bool = False
) -> int:
    """An upper estimate of the prompt tokens of a request (used by budgets and compaction)."""
    count = count or rough_count
    total = sum(message_tokens(message, count) for message in messages)
    return total + tools_tokens(tools, count) + fixed_tokens(thinking=thinking)


def fixed_tokens(*, thinking: bool) -> int:
    """What every request adds besides its messages and tools (an upper estimate)."""
    return _REQUEST_OVERHEAD + (_THINKING_OVERHEAD if thinking else 0)


def tools_tokens(tools: list[ToolSpec], count: TokenCounter | None = None) -> int:
    """An upper estimate of what offering ``tools`` adds to a prompt."""
    if not tools:
        return 0
    schema = json.dumps([{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools])
    return (count or rough_count)(schema) + _TOOLS_OVERHEAD


_TURN_STARTS = (ModelCallStep, NoticeStep, VerificationStep)


def plan_compaction(steps: list[Step], keep_recent: int) -> tuple[int, int] | None:
    """Which steps to summarise, as ``(first_index, last_index)``, or None if nothing can be.

    The cut falls where a turn starts, so a tool result is never separated from its call.
    """
    previous = next((s for s in reversed(steps) if isinstance(s, SummaryStep)), None)
    first = previous.last_index + 1 if previous else next(
        (s.index + 1 for s in steps if isinstance(s, TaskStep)), 1
    )
    live = [s for s in steps if s.index >= first and not isinstance(s, SummaryStep)]
    cuts = [s.index for s in live if isinstance(s, _TURN_STARTS) and s.index > first]
    if not cuts:
        return None
    keeping = [c for c in cuts if sum(1 for s in live if s.index >= c) >= keep_recent]
    cut = max(keeping) if keeping else max(cuts)
    return first, cut - 1


def facts_of(steps: list[Step]) -> list[str]:
    """What the steps found out, one line each (for the memory hook and extractive summaries)."""
    facts: list[str] = []
    for step in steps:
        if isinstance(step, ToolResultStep) and step.ok:
            facts.append(f"{step.name} returned: {step.content}")
        elif isinstance(step, ModelCallStep) and step.content:
            facts.append(f"assistant said: {step.content}")
        elif isinstance(step, SummaryStep):
            facts.append(f"earlier summary: {step.text}")
    return facts


def render_steps(steps: list[Step], limit_chars: int) -> str:
    """The steps as plain lines for the summariser; the oldest are cut first if too long."""
    lines: list[str] = []
    for step in steps:
        if isinstance(step, ModelCallStep):
            for call in step.tool_calls:
                lines.append(f"- called {call.name} {call.arguments}")
            if step.content:
                lines.append(f"- said: {step.content}")
        elif isinstance(step, ToolResultStep):
            lines.append(f"- {step.name} {'returned' if step.ok else 'failed'}: {step.content[:600]}")
        elif isinstance(step, (NoticeStep, VerificationStep, SummaryStep)):
            lines.append(f"- {step.summary_line()}")
    text = "\n".join(lines)
    if len(text) > limit_chars:
        text = "[older lines cut]\n" + text[-limit_chars:]
    return text


def summary_request(model: str, task: str, previous: str | None, steps: list[Step], *, window: int,
                    max_tokens: int) -> ChatRequest:
    limit = max((window - max_tokens - 200) * 3, 500)
    body = f"Task: {task}\n"
    if previous:
        body += f"Summary so far: {previous}\n"
    body += "Steps:\n" + render_steps(steps, limit - len(body))
    return ChatRequest(
        model=model,
        messages=[Message(role="system", content=prompt("summarise")), Message(role="user", content=body)],
        max_tokens=max_tokens,
        temperature=0.0,
    )


def extractive_summary(steps: list[Step], limit_chars: int = 1500) -> str:
    """A summary without a model (when the budget cannot afford one): the facts, clipped."""
    text = " | ".join(" ".join(f.split())[:200] for f in facts_of(steps))
    return text[:limit_chars] or "no results yet"
