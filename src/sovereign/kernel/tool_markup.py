"""Tool-call markup in model text: recognise it, parse it (also when cut off), keep it out of content.

Qwen-family models call tools as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
small models also write the bare JSON object, or one inside a Markdown code fence, sometimes after
some prose. Three pieces handle that:

- ``parse_tool_calls`` splits finished text into (content, calls): every complete call object for
  an offered tool becomes a ``ToolCall``, and all markup — tags, call objects, a call cut off at
  the end — is removed from the content.
- ``CallCollector`` reads grammar-constrained output as it streams and keeps every call object as
  soon as it closes, so a later call cut off by ``max_tokens`` loses nothing before it; it notices
  a call repeated in the same turn.
- ``MarkupGuard`` streams free text and holds back any tail that may be starting a call, so the
  start of a call never reaches the client as content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sovereign.kernel.messages import ToolCall, ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_CALL_START = '{"name":"'
_CALL_KEYS = frozenset({"name", "arguments", "parameters"})
_FENCE = re.compile(r"^```[a-zA-Z]*\n")
_EMPTY_FENCE = re.compile(r"```[a-zA-Z]*\s*```")
_OPEN_FENCE_AT_END = re.compile(r"```[a-zA-Z]*\s*$")
_DECODER = json.JSONDecoder()
# Characters where a call may begin inside free text.
_CANDIDATES = "<{`"


def canonical_arguments(arguments: str) -> str:
    """The arguments JSON in one canonical spelling (sorted keys, no spaces), for comparisons."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except json.JSONDecodeError:
        return arguments


def dedupe_calls(calls: Iterable[ToolCall]) -> list[ToolCall]:
    """Calls with the same name and the same arguments (canonicalised) kept once, first wins."""
    seen: set[tuple[str, str]] = set()
    out = []
    for call in calls:
        key = (call.name, canonical_arguments(call.arguments))
        if key not in seen:
            seen.add(key)
            out.append(call)
    return out


def to_call(obj: Any, names: Iterable[str]) -> ToolCall | None:
    """A ``ToolCall`` when ``obj`` is a call object (``name`` + ``arguments``) for an offered tool."""
    if not isinstance(obj, dict) or obj.get("name") not in names or not set(obj) <= _CALL_KEYS:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return ToolCall(name=obj["name"], arguments=json.dumps(arguments, ensure_ascii=False))


def _unfence(text: str) -> str | None:
    """Text inside a leading Markdown code fence (None while the fence line is incomplete)."""
    if not text.startswith("```"):
        return text
    match = _FENCE.match(text)
    if match is None:
        return None if "\n" not in text else ""
    return text[match.end():].lstrip()


def looks_like_tool_call(prefix: str, names: Iterable[str] | None = None) -> bool | None:
    """Whether text so far starts a tool call: True, False, or None (cannot tell yet).

    Recognises ``<tool_call>``, and a JSON object opening with ``"name"`` — bare or inside a
    Markdown code fence. With ``names``, such an object counts only when the name it spells is
    one of them (None while the name is still being written).
    """
    head = prefix.lstrip()
    if not head:
        return None
    if head.startswith(TOOL_CALL_OPEN):
        return True
    if TOOL_CALL_OPEN.startswith(head) or "```".startswith(head):
        return None
    body = _unfence(head)
    if not body:
        return None
    compact = "".join(body.split())
    if len(compact) < len(_CALL_START):
        return None if _CALL_START.startswith(compact) else False
    if not compact.startswith(_CALL_START):
        return False
    if names is None:
        return True
    spelled = compact[len(_CALL_START):]
    name, closed, _rest = spelled.partition('"')
    if closed:
        return name in set(names)
    return None if any(n.startswith(name) for n in names) else False


def _cut_off_call(text: str, names: set[str]) -> bool:
    """Whether ``text`` (from a ``{`` to the end) is a call object that never closed."""
    verdict = looks_like_tool_call(text, names)
    return verdict is True or verdict is None and "".join(text.split()).startswith('{"n')


def _is_call_fragment(text: str) -> bool:
    """Whether an unfinished tail is the beginning of call markup (dropped, never content)."""
    head = text.strip()
    if len(head) >= 2 and TOOL_CALL_OPEN.startswith(head):
        return True
    body = _unfence(head) if head.startswith("```") else head
    compact = "".join((body or "").split())
    return compact.startswith("{\"") and (_CALL_START.startswith(compact) or compact.startswith(_CALL_START))


def parse_tool_calls(text: str, tools: list[ToolSpec]) -> tuple[str | None, list[ToolCall]]:
    """Split model output into (content, calls); markup never stays in the content.

    Every complete call object for an offered tool is returned (duplicates once); ``<tool_call>``
    tags, those objects, their fences and a call cut off at the end are removed from the text.
    JSON that is not a call for an offered tool stays content.
    """
    names = {tool.name for tool in tools}
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        for tag in (TOOL_CALL_OPEN, TOOL_CALL_CLOSE):
            if text.startswith(tag, i):
                spans.append((i, i + len(tag)))
                i += len(tag)
                break
        else:
            if text[i] in "{[":
                end = _take_calls(text, i, names, calls)
                if end is not None:
                    spans.append((i, end))
                    i = end
                    continue
                if text[i] == "{" and _cut_off_call(text[i:], names):
                    spans.append((i, len(text)))  # a call cut off at the end
                    break
            i += 1
    return _content_without(text, spans), dedupe_calls(calls)


def _take_calls(text: str, start: int, names: set[str], calls: list[ToolCall]) -> int | None:
    """Parse the JSON value at ``start``; if it is one call object or a list of them, keep them."""
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    items = value if isinstance(value, list) else [value]
    found = [to_call(item, names) for item in items]
    if not items or not all(found):
        return None
    calls.extend(c for c in found if c)
    return end


def _content_without(text: str, spans: list[tuple[int, int]]) -> str | None:
    if not spans:
        return text if text.strip() else (text or None)
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    rest = _EMPTY_FENCE.sub("", "".join(kept))
    rest = _OPEN_FENCE_AT_END.sub("", rest).strip()
    return rest or None


def has_tool_markup(text: str | None, tools: list[ToolSpec] | None = None) -> bool:
    """Whether ``text`` carries tool-call markup: tags, or call objects (for ``tools`` if given)."""
    if not text:
        return False
    if TOOL_CALL_OPEN in text or TOOL_CALL_CLOSE in text:
        return True
    if tools is None:
        return re.search(r'\{\s*"name"\s*:\s*"[^"]*"\s*,\s*"(arguments|parameters)"', text) is not None
    content, calls = parse_tool_calls(text, tools)
    return bool(calls) or (content or "").strip() != text.strip()


class CallCollector:
    """Reads grammar-constrained call output as it streams; keeps each call as soon as it closes.

    ``repeated`` turns True when the model writes a call it already wrote this turn (same name and
    canonical arguments): the caller stops decoding there.
    """

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._names = {tool.name for tool in tools}
        self._text = ""
        self._pos = 0
        self._seen: set[tuple[str, str]] = set()
        self.calls: list[ToolCall] = []
        self.repeated = False

    @property
    def stopped(self) -> bool:
        return self.repeated

    def feed(self, piece: str) -> str:
        """Take more output; returns "" (none of it is content)."""
        self._text += piece
        if "}" not in piece:
            return ""
        while (start := self._text.find("{", self._pos)) >= 0:
            try:
                value, end = _DECODER.raw_decode(self._text, start)
            except json.JSONDecodeError:
                break  # not closed yet
            self._pos = end
            call = to_call(value, self._names)
            if call is None:
                continue
            key = (call.name, canonical_arguments(call.arguments))
            if key in self._seen:
                self.repeated = True
                break
            self._seen.add(key)
            self.calls.append(call)
        return ""

    def flush(self) -> str:
        return ""


class MarkupGuard:
    """Streams free text, holding back any tail that may be the start of a tool call.

    ``feed`` returns the text that is safe to show now. When a call starts, ``stopped`` turns True
    and the text before it stays in ``released``; the call itself is never returned.
    """

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._names = [tool.name for tool in tools]
        self._pending = ""
        self.stopped = False
        self.released: list[str] = []

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self._pending += piece
        hold = len(self._pending)
        for i, char in enumerate(self._pending):
            if char not in _CANDIDATES:
                continue
            verdict = looks_like_tool_call(self._pending[i:], self._names)
            if verdict is False:
                continue
            hold = i
            self.stopped = bool(verdict)
            break
        while hold > 0 and self._pending[hold - 1].isspace():
            hold -= 1  # whitespace before a call (or at the end, maybe before one) is not content yet
        ready, self._pending = self._pending[:hold], self._pending[hold:]
        if ready:
            self.released.append(ready)
        return ready

    def flush(self) -> str:
        """The held tail at the end of generation: released unless it is a call's beginning."""
        rest, self._pending = self._pending, ""
        if self.stopped or _is_call_fragment(rest):
            return ""
        if rest:
            self.released.append(rest)
        return rest

    @property
    def text(self) -> str:
        return "".join(self.released)
