"""The runtime's extension points: the ``Approver`` for risky tools, run events for live views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sovereign.agent.steps import Step

__all__ = ["AllowAll", "Approver", "DenyAll", "EventListener", "RunEvent"]


@runtime_checkable
class Approver(Protocol):
    """Decides whether a tool marked ``needs_approval`` may run; may wait for a human."""

    async def decide(self, run_id: str, tool_name: str, arguments: dict[str, Any]) -> bool: ...


@dataclass(slots=True)
class AllowAll:
    """Approves everything (tests, trusted batch runs, ``--yes``)."""

    async def decide(self, run_id: str, tool_name: str, arguments: dict[str, Any]) -> bool:
        return True


@dataclass(slots=True)
class DenyAll:
    """Refuses everything; records what was asked."""

    asked: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def decide(self, run_id: str, tool_name: str, arguments: dict[str, Any]) -> bool:
        self.asked.append((run_id, tool_name, arguments))
        return False


@dataclass(slots=True)
class RunEvent:
    """``step`` (a step was stored) or ``status`` (the run started, resumed or ended)."""

    run_id: str
    type: str
    step: Step | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "type": self.type, **self.data}
        if self.step is not None:
            out["step"] = self.step.to_dict()
            out["line"] = self.step.summary_line()
        return out


EventListener = Callable[[RunEvent], None]
