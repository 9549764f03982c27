"""The fix search of a run (a mixin of ``Session``): when a code-mode run on a task that asks to fix
a Python file with a stated check answers, loops, or has taken three turns while the file still
fails that check, the
runtime samples a few candidate fixes in short, separate model requests, tries each in the
sandbox against the check without writing anything, and saves the first that passes through its
own code turn (``FIX_SEARCH_MODEL``), which the model then sees. Once per run; the candidate
requests are model calls of the run (budgeted, accounted, on the governed path like any other).
The pieces are in ``fix_search``.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from sovereign.agent.code_exec import run_code
from sovereign.agent.errors import BudgetExceededError
from sovereign.agent.fix_check import asks_for_a_fix
from sovereign.agent.fix_search import PASS_MARK, FixGoal, candidate_request, candidate_text, fix_goal, save_block, trial_code
from sovereign.agent.steps import FIX_SEARCH_MODEL, ModelCallStep
from sovereign.governance.injection import withhold_injections
from sovereign.tools.base import ToolError
from sovereign.tools.sandbox import isolation_mode

if TYPE_CHECKING:
    from pathlib import Path

    from sovereign.agent.agent import Agent
    from sovereign.agent.steps import Step, TaskStep

__all__ = ["FIX", "FixSearching"]

FIX = "fix"
"""The loop state that runs the fix search before an answer is weighed."""
_TEMPERATURES = (0.3, 0.6, 0.8, 1.0)
"""One candidate request at each, until one passes (a greedy one would repeat the model's fix)."""
_FIX_AFTER_TURNS = 3
_CANDIDATE_TOKENS = 512
_TRIAL_SECONDS = 10.0


class FixSearching:
    """The fix search (uses the session's fields and methods)."""

    if TYPE_CHECKING:
        agent: Agent
        model: Any
        model_name: str
        steps: list[Step]
        fix_searched: bool
        held_answer: str | None
        def stage(self, step: Step) -> None: ...
        def task_step(self) -> TaskStep: ...
        def workspace_root(self) -> Path | None: ...
        def file_to_write(self) -> str: ...
        def current_text(self, name: str) -> str | None: ...
        def first_reads(self) -> dict[str, str]: ...
        def code_sandbox(self) -> Any: ...
        def consider_answer(self, text: str | None) -> str: ...
        async def call_model(self, model: Any, request: Any, step: Step, *, is_step: bool,
                             estimate: int | None = None) -> Any: ...

    def fix_goal_due(self) -> FixGoal | None:
        """The check a fix must pass, when this run may still search for one: code mode with
        isolation, a task that asks for a fix of an existing Python file and states a check, no
        search yet."""
        if self.fix_searched or not self.agent.fix_search or self.agent.mode != "code" \
                or isolation_mode() != "bubblewrap":
            return None
        task = self.task_step().task
        root = self.workspace_root()
        if root is None or not asks_for_a_fix(task):
            return None
        file = self.file_to_write()
        if not file.endswith(".py") or self.current_text(file) is None:
            return None
        return fix_goal(task, file, root)

    async def fix_state(self) -> str:
        """Before an answer on a fix task is weighed: search for a fix when the file still fails
        the check (→ the runtime's turn saving it), else weigh the answer as usual."""
        if await self.search_fix():
            return "code"
        return self.consider_answer(self.held_answer)

    async def search_fix_after_turns(self) -> bool:
        """After a block that did not answer: the search, once the model has taken
        ``_FIX_AFTER_TURNS`` turns at a fix task (a small model that has not fixed it by then
        seldom does)."""
        turns = sum(1 for step in self.steps if isinstance(step, ModelCallStep) and step.model == self.model_name)
        return turns >= _FIX_AFTER_TURNS and await self.search_fix()

    async def search_fix(self) -> bool:
        """Run the search once; True when a candidate passed and its saving turn is staged."""
        goal = self.fix_goal_due()
        if goal is None:
            return False
        self.fix_searched = True
        text = self.current_text(goal.file) or ""
        passed, failure = await self.fix_trial(goal, text)
        if passed is not False:  # it passes already, or the sandbox cannot run it here
            return False
        if not _parses(text):  # the run's writes broke the module: start from the file as first read
            text = self.first_reads().get(goal.file, text)
        shown = withhold_injections(text)
        tried: set[str] = set()
        for temperature in _TEMPERATURES:
            request = candidate_request(self.model_name, self.task_step().task, goal, shown, failure,
                                        temperature=temperature, max_tokens=_CANDIDATE_TOKENS)
            try:
                response = await self.call_model(self.model, request, ModelCallStep(model=self.model_name), is_step=False)
            except BudgetExceededError:
                return False
            candidate = candidate_text(response.message.content, text)
            if candidate is None or candidate in tried:
                continue
            tried.add(candidate)
            if (await self.fix_trial(goal, candidate))[0]:
                self.stage(ModelCallStep(model=FIX_SEARCH_MODEL, content=save_block(goal, candidate)))
                return True
        return False

    async def fix_trial(self, goal: FixGoal, text: str) -> tuple[bool | None, str]:
        """Run ``text`` as the module against the check in the sandbox: ``(passed, how it failed)``;
        ``passed`` is None when the sandbox cannot run here."""
        async def no_tools(name: str, arguments: dict) -> tuple[bool, str]:
            return False, "a fix trial calls no tools"

        with self.code_sandbox() as (sandbox, limit):
            try:
                outcome = await run_code(sandbox, trial_code(goal, text), [], no_tools,
                                         wall_seconds=min(limit, _TRIAL_SECONDS), state=None)
            except ToolError:
                return None, ""
        if outcome.error is None and PASS_MARK in outcome.output:
            return True, ""
        lines = [line for line in (outcome.error or outcome.output).strip().splitlines() if line.strip()]
        return False, withhold_injections(lines[-1][:300] if lines else "the check fails")


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True
