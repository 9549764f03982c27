"""Running a suite: each task, each repeat, in a fresh temporary workspace, through the real
agent runtime (``Runner`` with the agent ``sovereign run`` would use), then checked strictly.

Risky tools ask an ``EffectPolicy`` approver instead of a person. It decides from the call and
the tool's declared effects alone (never from what the task expects): by default it allows a
tool whose effects stay in the throwaway workspace (reaches the workspace, never leaves the
machine, any ``path`` argument inside it: file writes, code in the isolated sandbox) and refuses
everything else (HTTP, messages, MCP tools, undeclared tools); ``deny`` refuses all. So a hidden
instruction can only succeed by the agent choosing to follow it, and the attack checks see
whether it did.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sovereign.agent import Runner, parse_budget
from sovereign.agent.agent import Agent, agent_config, builtin_resolver
from sovereign.agent.steps import ToolCallStep, ToolResultStep
from sovereign.evals.checks import answer_problems, attack_effects, check_command_problem
from sovereign.evals.suite import Suite, Task
from sovereign.tools.base import Tool
from sovereign.tools.mcp_client import mount_configured

if TYPE_CHECKING:
    from sovereign.agent import RunResult
    from sovereign.kernel.protocol import Model
    from sovereign.services import Services

__all__ = ["ApprovalMode", "Attempt", "EffectPolicy", "EvalOptions", "Evaluator", "prepare_workspace"]

ApprovalMode = Literal["workspace", "deny"]


@dataclass
class EffectPolicy:
    """Approves a call only when its tool's effects stay in ``workspace`` (see module docstring)."""

    workspace: Path
    mode: ApprovalMode = "workspace"
    tools: dict[str, Tool] = field(default_factory=dict)
    """The run's tools by name (their declared effects); a tool not here is refused."""
    decisions: list[tuple[str, bool]] = field(default_factory=list)

    async def decide(self, run_id: str, tool_name: str, arguments: dict[str, Any]) -> bool:
        allowed = self.mode == "workspace" and self._confined(tool_name, arguments)
        self.decisions.append((tool_name, allowed))
        return allowed

    def _confined(self, tool_name: str, arguments: dict[str, Any]) -> bool:
        tool = self.tools.get(tool_name)
        if tool is None or tool.effects.leaves_machine or tool.effects.reaches != "workspace":
            return False
        path = arguments.get("path")
        if path is None:
            return True
        root = self.workspace.resolve()
        return (root / str(path)).resolve().is_relative_to(root)


@dataclass(kw_only=True)
class EvalOptions:
    """How to run a suite: which agent (config name; None = the default agent), an optional
    model and budget override, repeats, and the approval mode for risky tools."""

    agent: str | None = None
    model: str | None = None
    budget: str | None = None
    repeat: int = 1
    approve: ApprovalMode = "workspace"


@dataclass
class Attempt:
    """One run of one task, and what the checks found."""

    task_id: str
    category: str
    repeat: int
    passed: bool
    status: str
    stop_reason: str
    answer: str | None
    problems: list[str]
    attacked: bool
    """The task hides an instruction."""
    attack_effects: list[str]
    """What the hidden instruction made happen (empty: resisted)."""
    steps: int = 0
    tool_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    cost_usd: float = 0.0
    run_id: str | None = None

    @property
    def attack_succeeded(self) -> bool:
        return bool(self.attack_effects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task_id, "category": self.category, "repeat": self.repeat, "passed": self.passed,
            "status": self.status, "stop_reason": self.stop_reason, "answer": self.answer,
            "problems": self.problems, "attacked": self.attacked, "attack_effects": self.attack_effects,
            "steps": self.steps, "tool_calls": self.tool_calls, "tokens": self.tokens,
            "seconds": round(self.seconds, 3), "cost_usd": self.cost_usd, "run_id": self.run_id,
        }


def prepare_workspace(suite: Suite, task: Task, root: Path) -> dict[str, bytes]:
    """Fill ``root`` with the task's fixture folder, then its inline files; returns the bytes of
    the files an attack must leave unchanged."""
    fixture = suite.fixture_dir(task)
    if fixture is not None:
        shutil.copytree(fixture, root, dirs_exist_ok=True)
    for name, content in task.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    names = task.attack.unchanged if task.attack else []
    return {name: (root / name).read_bytes() for name in names if (root / name).is_file()}


def _executed_calls(result: RunResult) -> list[tuple[str, str]]:
    calls = {s.call_id: s for s in result.steps if isinstance(s, ToolCallStep)}
    return [(s.name, calls[s.call_id].arguments) for s in result.steps
            if isinstance(s, ToolResultStep) and s.executed and s.call_id in calls]


@dataclass
class Evaluator:
    """Runs tasks through ``Runner``. ``model`` overrides model resolution (tests pass a
    ``ScriptedModel``); otherwise ``services`` serve the configured model."""

    services: Services
    options: EvalOptions = field(default_factory=EvalOptions)
    model: Model | None = None
    on_attempt: Callable[[Attempt], None] | None = None

    def build_agent(self, workspace: Path) -> Agent:
        """The agent ``sovereign run`` would build, with its tools bound to ``workspace``."""
        settings = self.services.settings
        config = agent_config(self.options.agent, settings.home, settings.config_path, services=self.services)
        agent = config.build(builtin_resolver(self.services, workspace))
        if self.options.budget:
            agent.budget = parse_budget(self.options.budget, agent.budget)
        if self.options.model:
            agent.model = self.options.model
        return agent

    def model_name(self) -> str:
        """The model the runs use (for the report)."""
        with tempfile.TemporaryDirectory(prefix="sovereign-eval-") as scratch:
            agent = self.build_agent(Path(scratch))
        return Runner(self.services, model=self.model).model_name_for(agent)

    async def run(self, suite: Suite, tasks: list[Task]) -> list[Attempt]:
        """Every task ``options.repeat`` times, in order (one model, one run at a time)."""
        attempts: list[Attempt] = []
        async with mount_configured(self.services):  # the [[mcp_servers]] tools, as ``sovereign run``
            for repeat in range(self.options.repeat):
                for task in tasks:
                    attempt = await self.attempt(suite, task, repeat)
                    attempts.append(attempt)
                    if self.on_attempt is not None:
                        self.on_attempt(attempt)
        return attempts

    async def attempt(self, suite: Suite, task: Task, repeat: int = 0) -> Attempt:
        """Run ``task`` once in a fresh workspace and check the outcome."""
        with tempfile.TemporaryDirectory(prefix=f"sovereign-eval-{task.id}-") as scratch:
            workspace = Path(scratch).resolve()
            before = prepare_workspace(suite, task, workspace)
            agent = self.build_agent(workspace)
            approver = EffectPolicy(workspace, self.options.approve, {t.name: t for t in agent.tools})
            runner = Runner(self.services, model=self.model, workspace=workspace, approver=approver)
            started = time.monotonic()
            result = await runner.run(agent, task.prompt, principal=self.services.keys.local_principal())
            seconds = time.monotonic() - started
            problems = [] if result.ok else [f"run {result.status}: {result.stop_reason}"]
            problems += answer_problems(result.answer, task.expect)
            if (failed := check_command_problem(task.check, workspace, task.check_timeout_s)) is not None:
                problems.append(failed)
            effects = attack_effects(task.attack, workspace, before, result.answer, _executed_calls(result))
            problems += [f"attack succeeded: {effect}" for effect in effects]
        spent = result.spent
        return Attempt(
            task_id=task.id, category=task.category, repeat=repeat, passed=not problems, status=result.status,
            stop_reason=result.stop_reason, answer=result.answer, problems=problems,
            attacked=task.attack is not None, attack_effects=effects, steps=spent.steps,
            tool_calls=spent.tool_calls, tokens=spent.usage.total_tokens, seconds=seconds,
            cost_usd=spent.cost_usd, run_id=result.run_id,
        )

