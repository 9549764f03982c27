"""Plan a grammar-constrained tool pass: the grammar, the call bound, and whether a call can fit.

A local model asked for tool calls is steered into ``<tool_call>`` and decoded under a grammar
built from the tools' schemas, allowing at most ``max_calls`` calls. When ``max_tokens`` is tight
the plan makes the first call fit where it can: compact JSON (no optional spaces) and string
arguments capped to the room the smallest call leaves; when not even the smallest valid call fits, there is
no plan (the caller answers ``finish_reason="length"`` without decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sovereign.kernel.messages import ToolSpec
from sovereign.kernel.tool_calls import smallest_call, tool_call_grammar
from sovereign.kernel.tool_markup import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, CallCollector

# Below this many tokens of room per string argument the budget counts as tight.
_TIGHT = 64
# Tokens kept spare besides the smallest call's own count.
_MARGIN = 2


@dataclass(slots=True)
class ToolPlan:
    tools: list[ToolSpec]
    grammar: str
    max_calls: int
    string_cap: int | None
    steer: str = TOOL_CALL_OPEN + "\n"

    @classmethod
    def make(
        cls, tools: list[ToolSpec], *, max_tokens: int, max_calls: int, count: Callable[[str], int]
    ) -> ToolPlan | None:
        """The plan for ``tools`` within ``max_tokens`` (None when no valid call can fit)."""
        if max_tokens <= 0:
            return None
        sizes = [count(text + "\n" + TOOL_CALL_CLOSE) for t in tools if (text := smallest_call(t)) is not None]
        known = len(sizes) == len(tools)
        if known and min(sizes) > max_tokens:
            return None
        cap, compact = None, False
        if known:
            # Constrained decoding may split text into more tokens than the tokenizer would.
            needed = max(sizes) + max(sizes) // 2 + _MARGIN
            room = max(0, max_tokens - needed)
            strings = max(_count_strings(t.parameters) for t in tools)
            per_string = room // max(1, strings)
            if per_string < _TIGHT:  # a tight budget: compact JSON, no string longer than the room left
                compact = True
                cap = per_string if strings else None
        grammar = tool_call_grammar(tools, max_calls=max(1, max_calls), max_string_chars=cap, compact=compact)
        return cls(tools=tools, grammar=grammar, max_calls=max(1, max_calls), string_cap=cap)

    def collector(self) -> CallCollector:
        return CallCollector(self.tools)


def _count_strings(schema: Any) -> int:
    """How many string values a schema may hold (each array item counted once)."""
    if isinstance(schema, list):
        return sum(_count_strings(item) for item in schema)
    if not isinstance(schema, dict):
        return 0
    own = 1 if schema.get("type") == "string" and "enum" not in schema and "const" not in schema else 0
    nested = sum(_count_strings(sub) for sub in (schema.get("properties") or {}).values())
    for key in ("items", "anyOf", "oneOf", "additionalProperties"):
        nested += _count_strings(schema.get(key))
    return own + nested
