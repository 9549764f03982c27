"""Loop detection: the same tool call repeated, or turns that bring no new information.

The detector only says what it sees; the runner decides (nudge the model once, then stop).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from dataclasses import dataclass, field

__all__ = ["LoopDetector", "LoopPolicy"]


@dataclass(kw_only=True, slots=True)
class LoopPolicy:
    repeat_limit: int = 2
    """A call identical (tool and arguments) to this many earlier ones is a loop."""
    stale_steps: int = 3
    """This many turns in a row with no new tool result or text is a loop (0: off)."""
    nudge: bool = True
    """Ask the model to change course once before stopping."""


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        return arguments.strip()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass(slots=True)
class LoopDetector:
    policy: LoopPolicy = field(default_factory=LoopPolicy)
    calls: dict[str, int] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    stale_turns: int = 0
    nudged: bool = False

    @staticmethod
    @lru_cache(maxsize=4096)
    def call_key(name: str, arguments: str) -> str:
        return f"{name}:{_canonical(arguments)}"

    def is_repeat(self, name: str, arguments: str) -> bool:
        """True if this call was already made ``repeat_limit`` times."""
        return self.calls.get(self.call_key(name, arguments), 0) >= self.policy.repeat_limit

    def previous_result(self, name: str, arguments: str) -> str:
        return self.results.get(self.call_key(name, arguments), "")

    def record_call(self, name: str, arguments: str, result: str) -> bool:
        """Count an executed call; True if its result is new information."""
        key = self.call_key(name, arguments)
        self.calls[key] = self.calls.get(key, 0) + 1
        self.results[key] = result
        return self._observe(f"result:{name}:{result}")

    def record_text(self, text: str | None) -> bool:
        return bool(text and text.strip()) and self._observe(f"text:{text.strip()}")

    def _observe(self, value: str) -> bool:
        digest = _digest(value)
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True

    def end_turn(self, new_information: bool) -> bool:
        """Close a turn; True if the run has now gone ``stale_steps`` turns without anything new."""
        self.stale_turns = 0 if new_information else self.stale_turns + 1
        return 0 < self.policy.stale_steps <= self.stale_turns

    def should_nudge(self) -> bool:
        """True the first time a loop is seen (then the model gets one chance to change course)."""
        if self.policy.nudge and not self.nudged:
            self.nudged = True
            self.stale_turns = 0
            return True
        return False
