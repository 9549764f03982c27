"""Run budgets: limits on steps, tool calls, tokens, money and wall time, checked before each call.

Every check uses the worst case of the call about to be made (its whole ``max_tokens`` of
output, an upper estimate of its prompt), so a run stops *before* a call that could break a
limit, never after. ``RunUsage`` is what a run has spent so far; it adds up like ``Usage``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

from sovereign.agent.errors import BudgetExceededError
from sovereign.errors import InvalidRequestError
from sovereign.finops.ledger import price
from sovereign.kernel.messages import Usage
from sovereign.kernel.registry import PriceSheet

__all__ = ["Budget", "RunUsage", "parse_budget"]

# Short names accepted by ``parse_budget`` (CLI ``--budget steps=8,cost=0.01``).
_ALIASES = {
    "steps": "max_steps",
    "tool_calls": "max_tool_calls",
    "tools": "max_tool_calls",
    "input_tokens": "max_input_tokens",
    "output_tokens": "max_output_tokens",
    "cost": "max_cost_usd",
    "usd": "max_cost_usd",
    "time": "max_wall_s",
    "wall": "max_wall_s",
    "seconds": "max_wall_s",
}


@dataclass(kw_only=True, slots=True)
class Budget:
    """Hard limits of one run; ``None`` means no limit on that dimension."""

    max_steps: int | None = 20
    """Model turns of the agent loop (verification and summaries are not steps)."""
    max_tool_calls: int | None = 50
    """Tool calls actually executed (refused or loop-blocked calls do not count)."""
    max_input_tokens: int | None = None
    """Prompt tokens over every model call of the run, summaries and checks included."""
    max_output_tokens: int | None = None
    """Completion tokens (reasoning included) over every model call of the run."""
    max_cost_usd: float | None = None
    """Money over every model call, priced with the model's price sheet."""
    max_wall_s: float | None = None
    """Wall-clock seconds the run may take, summed over resumes."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value < 0:
                raise InvalidRequestError(f"budget {f.name} must be >= 0, got {value}", param=f.name)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Budget:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidRequestError(f"unknown budget fields: {', '.join(sorted(unknown))}", param="budget")
        return cls(**data)

    # --- checks ------------------------------------------------------------------------------

    def check_model_call(
        self,
        spent: RunUsage,
        *,
        prompt_tokens: int,
        max_output_tokens: int,
        prices: PriceSheet,
        is_step: bool,
    ) -> None:
        """Raise ``BudgetExceededError`` if this model call, at its worst, could break a limit."""
        self.check_time(spent)
        if is_step and self.max_steps is not None and spent.steps + 1 > self.max_steps:
            raise BudgetExceededError(f"step limit reached ({self.max_steps} steps)", limit="max_steps")
        used = spent.usage
        if self.max_input_tokens is not None and used.prompt_tokens + prompt_tokens > self.max_input_tokens:
            raise BudgetExceededError(
                f"input token limit: {used.prompt_tokens} used + about {prompt_tokens} for the next call "
                f"> {self.max_input_tokens}",
                limit="max_input_tokens",
            )
        output_used = used.completion_tokens
        if self.max_output_tokens is not None and output_used + max_output_tokens > self.max_output_tokens:
            raise BudgetExceededError(
                f"output token limit: {output_used} used + up to {max_output_tokens} for the next call "
                f"> {self.max_output_tokens}",
                limit="max_output_tokens",
            )
        if self.max_cost_usd is not None:
            worst = Usage(prompt_tokens=prompt_tokens, completion_tokens=max_output_tokens)
            next_cost = price(worst, prices)
            if spent.cost_usd + next_cost > self.max_cost_usd:
                raise BudgetExceededError(
                    f"cost limit: ${spent.cost_usd:.6f} spent + up to ${next_cost:.6f} for the next call "
                    f"> ${self.max_cost_usd:.6f}",
                    limit="max_cost_usd",
                )

    def output_room(self, spent: RunUsage) -> int | None:
        """Output tokens left, to shrink the next call's ``max_tokens`` (None: unlimited)."""
        if self.max_output_tokens is None:
            return None
        return max(self.max_output_tokens - spent.usage.completion_tokens, 0)

    def tool_calls_allowed(self, spent: RunUsage, wanted: int) -> int:
        """How many of ``wanted`` concurrent tool calls fit the budget (all of them, or fewer)."""
        self.check_time(spent)
        if self.max_tool_calls is None:
            return wanted
        return max(0, min(wanted, self.max_tool_calls - spent.tool_calls))

    def check_time(self, spent: RunUsage) -> None:
        if self.max_wall_s is not None and spent.elapsed() >= self.max_wall_s:
            raise BudgetExceededError(
                f"time limit reached ({spent.elapsed():.1f}s of {self.max_wall_s:g}s)", limit="max_wall_s"
            )

    def time_left(self, spent: RunUsage) -> float | None:
        """Seconds left of the wall-clock budget (the timeout of the next call), or None."""
        if self.max_wall_s is None:
            return None
        return max(self.max_wall_s - spent.elapsed(), 0.0)


@dataclass(slots=True)
class RunUsage:
    """What a run has spent: tokens, steps, tool calls, money and time."""

    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    elapsed_before_s: float = 0.0
    """Wall time of earlier sessions of this run (before a resume)."""
    started_at: float | None = None
    """``time.monotonic()`` when this session started."""

    def elapsed(self) -> float:
        live = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        return self.elapsed_before_s + live

    def __add__(self, other: RunUsage) -> RunUsage:
        return RunUsage(
            usage=self.usage + other.usage,
            steps=self.steps + other.steps,
            tool_calls=self.tool_calls + other.tool_calls,
            cost_usd=self.cost_usd + other.cost_usd,
            elapsed_before_s=self.elapsed() + other.elapsed(),
        )

    @classmethod
    def from_dict(cls, data: Any) -> RunUsage:
        """The inverse of ``to_dict`` (any mapping with its keys, e.g. a database row)."""
        return cls(
            usage=Usage(prompt_tokens=data["prompt_tokens"], cached_tokens=data["cached_tokens"],
                        completion_tokens=data["completion_tokens"], reasoning_tokens=data["reasoning_tokens"],
                        requests=data["model_calls"]),
            steps=data["steps"], tool_calls=data["tool_calls"], cost_usd=data["cost_usd"],
            elapsed_before_s=data["elapsed_s"],
        )

    def to_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "prompt_tokens": u.prompt_tokens, "cached_tokens": u.cached_tokens,
            "completion_tokens": u.completion_tokens, "reasoning_tokens": u.reasoning_tokens,
            "model_calls": u.requests, "steps": self.steps, "tool_calls": self.tool_calls,
            "cost_usd": self.cost_usd, "elapsed_s": round(self.elapsed(), 3),
        }


def parse_budget(text: str | None, base: Budget | None = None) -> Budget:
    """Parse ``steps=8,tool_calls=4,output_tokens=2000,cost=0.05,time=120`` over ``base``."""
    values = (base or Budget()).to_dict()
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = _ALIASES.get(key.strip(), key.strip())
        if not sep or key not in values:
            raise InvalidRequestError(
                f"bad budget item '{item.strip()}': use key=value with key in "
                + ", ".join(sorted(set(_ALIASES))),
                param="budget",
            )
        raw = raw.strip()
        if raw.lower() in ("none", "off", "unlimited"):
            values[key] = None
            continue
        try:
            values[key] = float(raw) if key in ("max_cost_usd", "max_wall_s") else int(raw)
        except ValueError:
            raise InvalidRequestError(f"budget {key} must be a number, got '{raw}'", param="budget") from None
    return Budget(**values)
