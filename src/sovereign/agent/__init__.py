"""The agent runtime: declarative agents, a runner that drives the think/act/observe/verify loop
within a budget, loop detection, context compaction, and durable, resumable runs."""

from sovereign.agent.agent import Agent, AgentConfig, load_agent_configs
from sovereign.agent.budget import Budget, RunUsage, parse_budget
from sovereign.agent.compaction import CompactionPolicy
from sovereign.agent.errors import BudgetExceededError, LoopDetectedError, RunNotFoundError
from sovereign.agent.hooks import AllowAll, Approver, DenyAll, RunEvent
from sovereign.agent.loop_detect import LoopPolicy
from sovereign.agent.runner import RunHandle, RunResult, Runner
from sovereign.agent.store import RunRecord, RunStore

__all__ = [
    "Agent",
    "AgentConfig",
    "AllowAll",
    "Approver",
    "Budget",
    "BudgetExceededError",
    "CompactionPolicy",
    "DenyAll",
    "LoopDetectedError",
    "LoopPolicy",
    "RunEvent",
    "RunHandle",
    "RunNotFoundError",
    "RunRecord",
    "RunResult",
    "RunStore",
    "RunUsage",
    "Runner",
    "load_agent_configs",
    "parse_budget",
]
