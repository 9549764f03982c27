"""The typed step records of a run; the same records are persisted, shown, and turned back into
messages to resume from.

A run is a list of steps: the task, each model call, each tool call and its result, checks of
the answer, summaries that stand in for older steps, notices to the model, and the final answer.
Each has timing, usage and error. ``transcript`` rebuilds the chat messages from them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar

import orjson

from sovereign.agent.prompts import fence, prompt
from sovereign.kernel.messages import Message, ToolCall, Usage

__all__ = [
    "CodeStep",
    "FinalAnswerStep",
    "ModelCallStep",
    "NoticeStep",
    "Step",
    "SummaryStep",
    "TaskStep",
    "ToolCallStep",
    "ToolResultStep",
    "VerificationStep",
    "step_from_dict",
    "step_from_json",
    "step_to_json",
    "transcript",
]


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _usage_dict(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "cached_tokens": usage.cached_tokens,
            "completion_tokens": usage.completion_tokens, "reasoning_tokens": usage.reasoning_tokens,
            "requests": usage.requests}


_second: list = [0, ""]  # the last whole second formatted, and its text


def _now() -> str:
    """The current UTC time as ``2026-01-02T03:04:05.678901Z`` (every step has one: kept cheap by
    formatting each second once)."""
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


@dataclass(kw_only=True)
class Step:
    """Common fields: position in the run, when it started, how long it took, usage, error."""

    kind: ClassVar[str] = "step"
    index: int = -1
    started_at: str = field(default_factory=_now)
    duration_ms: float = 0.0
    usage: Usage | None = None
    cost_usd: float = 0.0
    error: str | None = None

    def to_messages(self) -> list[Message]:
        return []

    def summary_line(self) -> str:
        """One line for progress views and ``runs show``."""
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (a shallow walk: ``asdict``'s deep copies cost more than the step)."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _field_names(type(self))}
        if self.usage is not None:
            data["usage"] = _usage_dict(self.usage)
        calls = data.get("tool_calls")
        if calls:
            data["tool_calls"] = [{"name": c.name, "arguments": c.arguments, "id": c.id} for c in calls]
        elif calls is not None:
            data["tool_calls"] = []
        if "facts" in data:
            data["facts"] = list(data["facts"])
        data["kind"] = self.kind
        return data

    def timed(self, started: float) -> Step:
        self.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return self


@dataclass(kw_only=True)
class TaskStep(Step):
    kind: ClassVar[str] = "task"
    task: str
    instructions: str = ""

    def to_messages(self) -> list[Message]:
        messages = [Message(role="system", content=self.instructions)] if self.instructions else []
        return messages + [Message(role="user", content=self.task)]

    def summary_line(self) -> str:
        return f"task: {_clip(self.task, 100)}"


OPENING_MODEL = "sovereign:opening"
"""The ``model`` of the runtime's opening turn (``agent/opening.py``): no model wrote it."""
APPLY_MODEL = "sovereign:apply"
"""The ``model`` of a turn the runtime wrote to save a fix the model's own code defined, after the
model was shown that block and answered without running it (``Accepting.apply_fix_turn``)."""
FIX_SEARCH_MODEL = "sovereign:fix-search"
"""The ``model`` of a turn the runtime wrote to save a candidate fix that passed the task's check
(``agent/fix_search.py``): the candidates were the model's, sampled in separate requests."""
OPENING_VARIABLES = {"contents": "In your code, the variable `contents` already holds the files' text (a dict: "
                                 "path -> text): use it, never copy the text into your code. ",
                     "content": "In your code, the variable `content` already holds the file's text: use it, never "
                                "copy the text into your code. ",
                     "names": "In your code, the variable `names` already holds this list of names. "}
"""What the opening block leaves for the model's code (``agent/opening.py``), as it is told."""


@dataclass(kw_only=True)
class ModelCallStep(Step):
    kind: ClassVar[str] = "model_call"
    model: str
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None

    def to_messages(self) -> list[Message]:
        if self.error is not None or (self.model == OPENING_MODEL and not self.tool_calls):
            return []  # the runtime's opening code: the model sees only what it printed
        return [Message(role="assistant", content=self.content, tool_calls=list(self.tool_calls))]

    def summary_line(self) -> str:
        if self.error:
            return f"model {self.model}: error {self.error}"
        if self.tool_calls:
            return f"model {self.model}: calls " + ", ".join(f"{c.name}({_clip(c.arguments, 60)})" for c in self.tool_calls)
        return f"model {self.model}: {_clip(self.content or '', 100)}"


@dataclass(kw_only=True)
class ToolCallStep(Step):
    """Written before a tool runs: a call with a step but no result was interrupted."""

    kind: ClassVar[str] = "tool_call"
    call_id: str
    name: str
    arguments: str
    approved: bool | None = None

    def summary_line(self) -> str:
        return f"tool {self.name}({_clip(self.arguments, 80)})"


@dataclass(kw_only=True)
class ToolResultStep(Step):
    kind: ClassVar[str] = "tool_result"
    call_id: str
    name: str
    content: str
    ok: bool = True
    executed: bool = True
    """False when the call was refused (approval, budget, loop) rather than run."""
    in_code: bool = False
    """A call made by the agent's code (code mode): the model sees the code's output instead."""

    def to_messages(self) -> list[Message]:
        if self.in_code:
            return []
        return [Message(role="tool", content=self.content, tool_call_id=self.call_id, name=self.name)]

    def summary_line(self) -> str:
        status = "ok" if self.ok else ("refused" if not self.executed else "error")
        return f"result {self.name} [{status}]: {_clip(self.content, 100)}"


@dataclass(kw_only=True)
class CodeStep(Step):
    """The run of the code a model turn wrote (code mode): what it printed, and the final answer
    when the code called ``final_answer``. Its tool calls are stored as their own steps before it."""

    kind: ClassVar[str] = "code"
    code: str
    output: str = ""
    """What the model sees: printed output, then the error if the code failed."""
    final: str | None = None
    tool_calls: int = 0
    opening: bool = False
    """The run of the runtime's opening code (``agent/opening.py``), shown as material, not as
    the output of a block the model wrote."""

    def to_messages(self) -> list[Message]:
        shown = self.output or "(nothing printed)"
        if self.opening:
            held = next((text for name, text in OPENING_VARIABLES.items() if f"{name} = " in self.code), "")
            return [Message(role="user", content=prompt("code_opening").format(output=shown, variables=held,
                                                                                 fence=fence(shown)))]
        return [Message(role="user", content=prompt("code_observation").format(output=shown))]

    def summary_line(self) -> str:
        if self.final is not None:
            return f"code: final_answer({_clip(self.final, 80)})"
        status = "error" if self.error else "ok"
        return f"code [{status}, {self.tool_calls} tool calls]: {_clip(self.output, 100)}"


@dataclass(kw_only=True)
class VerificationStep(Step):
    kind: ClassVar[str] = "verification"
    model: str
    passed: bool
    critique: str = ""

    def to_messages(self) -> list[Message]:
        if self.passed:
            return []
        return [Message(role="user", content=prompt("retry").format(critique=self.critique or "not specified"))]

    def summary_line(self) -> str:
        return f"verify [{'pass' if self.passed else 'fail'}]: {_clip(self.critique, 100)}"


@dataclass(kw_only=True)
class NoticeStep(Step):
    """A message from the runtime to the model (e.g. change course after a detected loop)."""

    kind: ClassVar[str] = "notice"
    text: str
    reason: str = ""

    def to_messages(self) -> list[Message]:
        return [Message(role="user", content=self.text)]

    def summary_line(self) -> str:
        return f"notice ({self.reason}): {_clip(self.text, 100)}"


@dataclass(kw_only=True)
class SummaryStep(Step):
    """Stands in for steps ``first_index..last_index`` in the transcript (they stay stored)."""

    kind: ClassVar[str] = "summary"
    text: str
    first_index: int
    last_index: int
    facts: list[str] = field(default_factory=list)

    def to_messages(self) -> list[Message]:
        return [Message(role="user", content=prompt("summary_message").format(summary=self.text))]

    def summary_line(self) -> str:
        return f"summary of steps {self.first_index}-{self.last_index}: {_clip(self.text, 100)}"


@dataclass(kw_only=True)
class FinalAnswerStep(Step):
    kind: ClassVar[str] = "final_answer"
    answer: str | None
    status: str
    stop_reason: str
    partial: bool = False
    verified: bool | None = None

    def summary_line(self) -> str:
        return f"final [{self.status}: {self.stop_reason}]: {_clip(self.answer or '', 100)}"


_KINDS: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (TaskStep, ModelCallStep, ToolCallStep, ToolResultStep, CodeStep, VerificationStep, NoticeStep,
                SummaryStep, FinalAnswerStep)
}


def step_from_dict(data: dict[str, Any]) -> Step:
    """Rebuild a step from ``Step.to_dict()`` output (or its JSON)."""
    data = dict(data)
    cls = _KINDS[data.pop("kind")]
    if data.get("usage") is not None:
        data["usage"] = Usage(**data["usage"])
    if isinstance(data.get("tool_calls"), list):  # a model turn's calls (a code step keeps a count)
        data["tool_calls"] = [ToolCall(**call) for call in data["tool_calls"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def step_to_json(step: Step) -> str:
    """The stored form of a step: its fields as JSON (the kind is stored beside it). Steps are
    stored every turn, so orjson encodes the dataclass directly, nested usage and calls included."""
    return orjson.dumps(step).decode()


def step_from_json(text: str | bytes, kind: str) -> Step:
    return step_from_dict({**orjson.loads(text), "kind": kind})


def transcript(steps: list[Step], cache: dict[int, list[Message]] | None = None) -> list[Message]:
    """The chat messages a model sees for ``steps``: summarised steps replaced by their summary.

    Order: the task, then the latest summary (if any), then every step it does not cover.
    ``cache`` (step index → messages) saves rebuilding the messages of stored steps every turn.
    """
    summary = next((s for s in reversed(steps) if isinstance(s, SummaryStep)), None)
    covered = summary.last_index if summary is not None else -1
    head: list[Message] = []
    body: list[Message] = []
    for step in steps:
        if isinstance(step, TaskStep):
            head.extend(_messages(step, cache))
        elif isinstance(step, SummaryStep) or step.index <= covered:
            continue
        else:
            body.extend(_messages(step, cache))
    if summary is not None:
        head.extend(summary.to_messages())
    return head + body


def _messages(step: Step, cache: dict[int, list[Message]] | None) -> list[Message]:
    if cache is None or step.index < 0:
        return step.to_messages()
    found = cache.get(step.index)
    if found is None:
        found = cache[step.index] = step.to_messages()
    return found


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
