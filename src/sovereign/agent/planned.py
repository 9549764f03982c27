"""A planned call: one tool call chosen before the run (by a swarm's planner), run as a run of its
own with no model call.

The call is stored as the run's first turn, a ``ModelCallStep`` of ``PLANNED_MODEL``, in the
transaction that creates the run; from there it takes the path every model's call takes:
visibility and key scopes, argument validation, the injection guard (its result is marked when
untrusted), approvals, the run's budget, the tool's timeout, the audit log. A resumed run does
not repeat a call whose result is stored. The result is the run's answer: ``completed`` when the
tool ran and succeeded, else ``failed`` with the refusal or the error as the reason.

Arguments may carry text an earlier call read (a swarm fills them from other nodes' results):
when they hold a block marked untrusted, the run's context counts as untrusted
(``taint_from_arguments``), so the injection guard gates an outward tool as it would for an agent
that had read that text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sovereign.agent.steps import ModelCallStep, Step, ToolResultStep
from sovereign.errors import InvalidRequestError
from sovereign.governance.injection import Taint
from sovereign.kernel.messages import ChatRequest, ChatResponse, StreamEvent, ToolCall

__all__ = ["PLANNED_MODEL", "NoModel", "planned_outcome", "planned_turn", "planned_turn_of", "taint_from_arguments"]

PLANNED_MODEL = "sovereign:planned"
"""The ``model`` of a planned call's turn: no model wrote it."""
_MARKED = "<untrusted source="
"""How ``governance.injection.mark_untrusted`` opens a block (in JSON text, an escaped quote follows)."""


def planned_turn(tool: str, arguments: dict[str, Any] | str) -> ModelCallStep:
    """The turn that makes the call (the run's first after its task)."""
    text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return ModelCallStep(model=PLANNED_MODEL, tool_calls=[ToolCall(name=tool, arguments=text)],
                         finish_reason="tool_calls")


def planned_turn_of(steps: Sequence[Step]) -> ModelCallStep | None:
    """The planned turn when ``steps`` are a planned call's run (its first model turn), else None."""
    first = next((s for s in steps if isinstance(s, ModelCallStep)), None)
    return first if first is not None and first.model == PLANNED_MODEL else None


def taint_from_arguments(taint: Taint, turn: ModelCallStep) -> None:
    """Count the run's context as untrusted when the planned call's arguments carry a marked block."""
    for call in turn.tool_calls:
        if _MARKED in call.arguments:
            taint.observe(call.arguments, source="tool", origin=f"arguments of {call.name}", mark=False)


def planned_outcome(steps: Sequence[Step]) -> tuple[str, str, str | None]:
    """Status, reason and answer of a planned call's run once its call has a result."""
    result = next((s for s in reversed(steps) if isinstance(s, ToolResultStep)), None)
    if result is None:
        return "failed", "the planned call has no result", None
    if result.ok:
        return "completed", f"result of {result.name}", result.content
    why = "refused" if not result.executed else "failed"
    return "failed", f"{result.name} {why}: {result.content[:300]}", result.content


@dataclass(frozen=True, slots=True)
class NoModel:
    """Stands in for the model of a planned call's run: it is never asked (nothing is resolved,
    routed or loaded for such a run)."""

    name: str = PLANNED_MODEL

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise InvalidRequestError("a planned call's run makes no model call")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise InvalidRequestError("a planned call's run makes no model call")
        yield  # pragma: no cover (makes this an async generator)
