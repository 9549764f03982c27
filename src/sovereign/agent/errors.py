"""Errors of the agent runtime: bad agent definitions, unknown runs, and the stop signals of a run."""

from __future__ import annotations

from sovereign.errors import ConfigError, NotFoundError, SovereignError, SpendCapExceededError, UserError

__all__ = [
    "AgentConfigError",
    "AgentError",
    "BudgetExceededError",
    "LoopDetectedError",
    "NoValidActionError",
    "RunNotFoundError",
    "RunBusyError",
    "RunNotResumableError",
    "UnknownAgentError",
]


class AgentError(SovereignError):
    """Base of the agent runtime's errors."""

    error_type = "agent_error"
    code = "agent_error"


class AgentConfigError(ConfigError):
    """An agent definition (TOML ``[[agents]]`` or API body) is invalid."""

    code = "invalid_agent"


class UnknownAgentError(UserError):
    """No agent of that name is defined."""

    status_code = 404
    code = "agent_not_found"


class RunNotFoundError(NotFoundError):
    """No run with that id is stored."""

    code = "run_not_found"


class RunNotResumableError(UserError):
    """The run already finished, or its tools can no longer be found."""

    status_code = 409
    code = "run_not_resumable"


class RunBusyError(RunNotResumableError):
    """Another live process (or another call in this one) is driving the run right now."""

    code = "run_busy"


class BudgetExceededError(SpendCapExceededError):
    """Control flow: the next call would break a limit of the run's budget (``limit`` names it)."""

    code = "budget_exceeded"

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class LoopDetectedError(AgentError):
    """Control flow: the run repeats itself without making progress."""

    code = "loop_detected"


class NoValidActionError(AgentError):
    """Control flow: the model kept answering with something that is no valid action (a call
    written as text, an unknown tool, bad arguments, no code) after every correction."""

    code = "no_valid_action"
