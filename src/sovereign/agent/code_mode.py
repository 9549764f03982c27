"""Code mode (the approach of smolagents' CodeAgent and the CodeAct paper): the model acts by
writing a Python block; it runs in the sandbox with the agent's tools as functions, what it
prints comes back as the observation, and ``final_answer(value)`` ends the run.

Every tool call the code makes comes back to the runtime over a pipe and takes the same
governed path as a JSON call: visibility and key scopes, argument validation, the injection
guard and approvals, the tool-call budget, a call step stored before it runs, audit. The
workspace is mounted read-only in the sandbox (``open()`` on it goes through ``read_file`` /
``write_file``), and because the code can read any workspace file the context counts as holding
untrusted content from the first code run on: outward calls are gated as in JSON mode after a
read. Without bubblewrap the sandbox cannot hide the host, so each code run then needs approval.
"""

from __future__ import annotations

import ast
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from sovereign.agent.answer_check import call_markup
from sovereign.agent.code_exec import function_name, run_code
from sovereign.agent.errors import BudgetExceededError
from sovereign.agent.loop_detect import LoopDetector
from sovereign.agent.prompts import prompt
from sovereign.agent.steps import (
    OPENING_MODEL,
    CodeStep,
    FinalAnswerStep,
    ModelCallStep,
    NoticeStep,
    Step,
    SummaryStep,
    ToolCallStep,
    ToolResultStep,
)
from sovereign.governance.injection import mark_untrusted, withhold_injections
from sovereign.kernel.messages import ChatRequest, Thinking, ToolCall, ToolChoice
from sovereign.tools.base import Effects, Tool, ToolError, tool
from sovereign.tools.builtins import sandbox_policy
from sovereign.tools.sandbox import Sandbox, isolation_mode

if TYPE_CHECKING:
    from sovereign.agent.agent import Agent

_KEEP_ANSWER_MARK = "and the note above says why that answer looks wrong"
"""A phrase of the ``repeat_answer_code`` notice (sent once per run)."""

__all__ = ["CODE", "CodeActing", "code_resume_state", "describe_functions", "extract_code", "system_prompt"]

CODE = "code"
_STOP = ["\n```\n", "\nObservation:"]
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_UNLISTED = frozenset({"calculator"})
_RESAMPLE_TEMPERATURE = 0.7
"""The temperature of the turn after a repeated block, so the model does not write it again."""
_RETURNS = {"list_files": " -> list of names", "search_files": " -> list of 'file:line: text'",
            "read_file": " -> str"}


@tool(effects=Effects(acts_on_world=True, needs_approval=True, reaches="workspace"))
def _run_code(code: str) -> str:
    """The agent's code (code mode), as the approver sees it where no bubblewrap isolates it."""
    raise AssertionError("never called: it only names the action for approval")


_RUN_CODE = _run_code


def system_prompt(agent: Agent) -> str:
    """The built-in system prompt of ``agent``'s mode (its own instructions are added after)."""
    if agent.mode == "code":
        return prompt("code_system").format(functions=describe_functions(agent.tools))
    return prompt("system")


def describe_functions(tools: list[Tool]) -> str:
    """One line per tool as a Python function: ``- read_file(path, offset=0) -> str: Read a text file...``.
    The calculator is left out of the list (Python computes); it stays callable."""
    lines = []
    for tool in tools:
        if tool.name in _UNLISTED:
            continue
        properties = tool.parameters.get("properties", {})
        required = set(tool.parameters.get("required", []))
        args = [name if name in required else f"{name}={properties[name].get('default')!r}" for name in properties]
        summary = tool.description.split(". ")[0].rstrip(".").replace("``", "")
        returns = _RETURNS.get(tool.name, "")
        lines.append(f"- {function_name(tool.name)}({', '.join(args)}){returns}: {summary}")
    lines.append("- final_answer(value): give the answer and stop")
    return "\n".join(lines)


def extract_code(text: str) -> str | None:
    """The Python the reply wants run: its first fenced block, or the whole reply when it is
    bare code calling a function; None when the reply holds no code."""
    match = _FENCE.search(text)
    if match is not None:
        code = match.group(1).strip("\n")
        return code if code.strip() else None
    # Small models often drop one of the fences: an unmatched fence line is not part of the code.
    stripped = re.sub(r"^```[A-Za-z]*\n|\n?```$", "", text.strip()).strip()
    if "(" not in stripped:
        return None
    try:
        tree = ast.parse(stripped)
    except SyntaxError:
        return None
    calls = any(isinstance(node, ast.Call) for node in ast.walk(tree))
    return stripped if calls else None


def code_resume_state(steps: list[Step]) -> tuple[str, str | None] | None:
    """Where an interrupted code-mode run continues: ``(CODE, None)`` when the last turn's code
    did not finish, ``("verify", answer)`` when it gave a final answer; None otherwise."""
    live = [s for s in steps if not isinstance(s, (SummaryStep, FinalAnswerStep))]
    for step in reversed(live):
        if isinstance(step, CodeStep):
            return ("verify", step.final) if step.final is not None else None
        if isinstance(step, ModelCallStep):
            if step.error is not None:
                return None
            code = extract_code(step.content or "")
            return (CODE, None) if code is not None and call_markup(code) is None else None
        if not isinstance(step, (ToolCallStep, ToolResultStep)):
            return None
    return None


class CodeActing:
    """The code-mode states of ``Session`` (a mixin: it uses the session's fields and methods)."""

    if TYPE_CHECKING:
        agent: Agent
        runner: Any
        steps: list[Step]
        spent: Any
        guard: Any
        detector: Any
        view: Any
        model_name: str
        invalid_actions: int
        resample: bool
        _tool_specs: list
        _code_arguments: dict[str, str]
        def stage(self, step: Step) -> None: ...
        def commit(self) -> None: ...
        def consider_answer(self, text: str | None) -> str: ...
        def unsaved_fix_notice(self) -> str | None: ...
        def asked(self, mark: str) -> bool: ...
        def task_step(self) -> Any: ...
        def workspace_root(self) -> Path | None: ...
        async def screen(self, call: ToolCall, prior: Any, *, loops: bool = True) -> Any: ...
        async def execute(self, call: ToolCall, tool: Tool, arguments: dict, *, concurrent: bool,
                          in_code: bool = False) -> ToolResultStep: ...
        async def loop_signal(self, reason: str) -> None: ...
        async def search_fix(self) -> bool: ...
        async def search_fix_after_turns(self) -> bool: ...
        def call_step(self, call: ToolCall, tool: Tool) -> ToolCallStep: ...
        def refused(self, call: ToolCall, text: str) -> ToolResultStep: ...

    _replay: list[tuple[str, ToolResultStep]]
    _code_state: dict | None
    """What the last code run left for the next (variables, definitions; see ``code_prelude``).
    Kept in memory: a resumed run starts its blocks afresh."""
    _code_calls: int
    _budget_spent: bool

    def code_request(self, max_tokens: int, thinking: Thinking) -> ChatRequest:
        temperature = self.agent.temperature
        if self.resample:
            temperature, self.resample = max(temperature or 0.0, _RESAMPLE_TEMPERATURE), False
        return ChatRequest(model=self.model_name, messages=list(self.view.messages), max_tokens=max_tokens,
                           temperature=temperature, stop=list(_STOP), tool_choice=ToolChoice(mode="none"),
                           thinking=thinking)

    def read_code_turn(self, step: ModelCallStep) -> str:
        """After a model turn in code mode: run its code (→ CODE), or weigh it as an answer."""
        code = extract_code(step.content or "")
        if code is None or call_markup(code) is not None:
            return self.consider_answer(step.content)
        self.invalid_actions = 0
        return CODE

    async def code_state(self) -> str:
        """Run the last turn's code; its output is the next observation, ``final_answer`` the answer."""
        turn = next(s for s in reversed(self.steps) if isinstance(s, ModelCallStep) and s.error is None)
        code = extract_code(turn.content or "") or ""
        before = self._ran_before(code, turn)
        if before is not None:
            return await self._resent(before)
        self._replay = self._stored_calls(turn)
        self._code_calls, self._budget_spent = 0, False
        self.commit()  # the turn is stored before its code runs
        started = time.perf_counter()
        step = CodeStep(code=code, opening=turn.model == OPENING_MODEL)
        refusal = await self._code_refusal(code, turn)
        if refusal is not None:
            step.output, step.error = refusal, "not run"
        else:
            await self._run(code, step)
        step.tool_calls = self._code_calls
        self.stage(step.timed(started))
        if self._budget_spent:
            raise BudgetExceededError(f"tool-call limit reached ({self.agent.budget.max_tool_calls} calls)",
                                      limit="max_tool_calls")
        if step.final is not None:
            return self.consider_answer(step.final)
        if await self.search_fix_after_turns():
            return CODE
        if step.error is None:
            unsaved = self.unsaved_fix_notice()
            if unsaved is not None:
                self.stage(NoticeStep(text=unsaved, reason="grounding"))
        if self.detector.end_turn(self.detector.record_text(f"code output: {step.output}")):
            return await self.code_loop(f"{self.detector.stale_turns} code runs without new output")
        return "model"

    async def code_loop(self, reason: str) -> str:
        """Code runs gone stale: on a task that asks for a fix, the fix search comes first (its
        saving turn runs next); else the loop signal."""
        if await self.search_fix():
            return CODE
        await self.loop_signal(reason)
        return "model"

    def fresh_start(self) -> None:
        """A code run gone stale (a loop): the model's view of its attempts is replaced by one
        note — the material it was given, how the attempts failed, what is still defined — and
        its next turn is sampled. Small models copy their own failing block when it stays in view.
        The attempts stay stored (the note is a ``SummaryStep``)."""
        opening = next((s for s in self.steps if isinstance(s, CodeStep) and s.opening), None)
        errors = list(dict.fromkeys(s.error for s in self.steps if isinstance(s, CodeStep) and s.error
                                    and not s.opening and s.error != "not run"))[-3:]
        names = (self._code_state or {}).get("names") or []
        text = prompt("fresh_start").format(
            material=f"The workspace content the task is about, read for you:\n{opening.output}\n" if opening else "",
            errors="; ".join(errors) or "they printed nothing new",
            names=", ".join(str(n) for n in names[:12]) or "nothing")
        first = self.task_step().index + 1
        self.stage(SummaryStep(text=text, first_index=first, last_index=self.steps[-1].index))
        self.resample = True

    async def _resent(self, before: CodeStep) -> str:
        """A block sent again after it ran (its output, or error, is in view): not run again.
        Small models re-send a block whose output they already have (often the block that prints
        a file), or one that failed: the model is told what to do next, and its next turn is
        sampled (at temperature 0 it would write the same). A block that answered, re-sent after
        a question about that answer, is told once to follow the question (offered to keep its
        answer, a small model takes that); re-sent after that, its answer is kept. Either way the
        re-sends count toward the loop guard."""
        answered = before.error is None and bool((before.final or "").strip())
        if answered and self.asked(_KEEP_ANSWER_MARK):
            if not self.detector.end_turn(False):
                return self.consider_answer(before.final)
        else:
            if answered:
                text = prompt("repeat_answer_code").format(answer=(before.final or "")[:200])
            elif before.error is None:
                text = prompt("repeat_code")
            else:
                text = prompt("repeat_failed_code").format(error=before.error)
            self.stage(NoticeStep(text=text, reason="repeat"))
            self.resample = True
            if not self.detector.end_turn(False):
                return "model"
        return await self.code_loop(f"{self.detector.stale_turns} code runs without new output")

    def _ran_before(self, code: str, turn: ModelCallStep) -> CodeStep | None:
        """The earlier run of the same code before ``turn`` (its output, or error, is in view)."""
        for step in self.steps:
            if isinstance(step, CodeStep) and step.index < turn.index and step.code == code and step.error != "not run":
                return step
        return None

    @contextmanager
    def code_sandbox(self) -> Iterator[tuple[Sandbox, float]]:
        """The read-only sandbox code runs in (the workspace, else a scratch folder removed after),
        with its wall-clock limit."""
        root = self.workspace_root()
        scratch = tempfile.TemporaryDirectory(prefix="sovereign-code-") if root is None else None
        policy = sandbox_policy(self.runner.services)
        try:
            yield (Sandbox(Path(scratch.name) if scratch else root, policy.limits, allow_weak=policy.allow_weak,
                           protect=policy.protect, read_only=True), policy.limits.wall_seconds)
        finally:
            if scratch is not None:
                scratch.cleanup()

    async def _run(self, code: str, step: CodeStep) -> None:
        assert self.guard is not None
        self.guard.taint.untrusted = True  # the code can read any workspace file (module docstring)
        findings = len(self.guard.taint.findings)
        time_left = self.agent.budget.time_left(self.spent)
        with self.code_sandbox() as (sandbox, limit):
            wall = limit if time_left is None else max(min(limit, time_left), 1.0)
            try:
                outcome = await run_code(sandbox, code, self._tool_specs, self.call_from_code, wall_seconds=wall,
                                         state=self._code_state)
            except ToolError as exc:  # the sandbox may not run here (no isolation, a workspace holding the home)
                step.output, step.error = f"not run: {exc.message}", "not run"
                return
        if outcome.state is not None:
            self._code_state = outcome.state
        text = outcome.output
        if outcome.error:
            step.error = outcome.error.strip().splitlines()[-1][:200]
            text = (text + "\n" if text else "") + outcome.error
        self.guard.taint.observe(text, source="tool", origin="python", mark=False)
        if len(self.guard.taint.findings) > findings:
            # The model sees the output without the lines that try to instruct it (the code can
            # still read the data itself), inside the untrusted marker.
            text = mark_untrusted(withhold_injections(text), "file", "python")
        limit = self.agent.max_tool_result_chars
        if len(text) > limit:
            text = text[:limit] + f"\n[cut: {len(text) - limit} more characters not shown]"
        step.output, step.final = text, outcome.final

    async def _code_refusal(self, code: str, turn: ModelCallStep) -> str | None:
        """Why the code may not run (no approval where the sandbox cannot isolate it), or None."""
        if isolation_mode() == "bubblewrap":
            return None
        assert self.guard is not None
        call_id = f"code-{turn.index}"
        return await self.guard.check(_RUN_CODE, {"code": code}, call_id, needs_approval=True, gate=False,
                                      before_wait=self.commit)

    def _stored_calls(self, turn: ModelCallStep) -> list[tuple[str, ToolResultStep]]:
        """Calls (key, result) this turn's code made before the run was interrupted (resume): the
        code runs again and gets their results back instead of running them twice."""
        later = [s for s in self.steps if s.index > turn.index]
        arguments = {s.call_id: s.arguments for s in later if isinstance(s, ToolCallStep)}
        return [(LoopDetector.call_key(s.name, arguments[s.call_id]), s) for s in later
                if isinstance(s, ToolResultStep) and s.in_code and s.executed and s.call_id in arguments]

    async def call_from_code(self, name: str, args: dict[str, Any]) -> tuple[bool, str]:
        """One tool call from the running code, on the governed path; ``(ok, text)`` for the code."""
        arguments = orjson.dumps(args, default=str).decode()
        if self._replay and self._replay[0][0] == LoopDetector.call_key(name, arguments):
            stored = self._replay.pop(0)[1]
            return stored.ok, stored.content if stored.ok else (stored.error or stored.content)
        self._replay = []
        call = ToolCall(name=name, arguments=arguments)
        self._code_arguments[call.id] = arguments  # for the audit entry
        verdict = await self.screen(call, None, loops=False)
        if isinstance(verdict, str):
            self._refuse(call, verdict)
            return False, verdict.removeprefix("error: ")
        if self.agent.budget.tool_calls_allowed(self.spent, 1) < 1:
            self._budget_spent = True
            text = "not run: the run's tool-call budget is spent"
            self._refuse(call, text)
            return False, text
        self.spent.tool_calls += 1
        self._code_calls += 1
        tool, values = verdict
        self.stage(self.call_step(call, tool))
        self.commit()  # stored before it runs
        result = await self.execute(call, tool, values, concurrent=False, in_code=True)
        return result.ok, result.content if result.ok else (result.error or result.content)

    def _refuse(self, call: ToolCall, text: str) -> None:
        step = self.refused(call, text)
        step.in_code = True
        self.stage(step)
