"""The agent loop as a small state machine: MODEL → TOOLS → MODEL … → VERIFY → FINISH.

One ``Session`` drives one execution of a run (a fresh start or a resume). Each state is one
method that does one thing and names the next state. Budgets are checked before every model and
tool call; control-flow signals (budget, loop) end the run with a clear reason and a usable
partial answer.

Durability: steps are staged as they happen and committed, in one transaction with their ledger
and audit writes, before anything that acts on the world or waits: every model call, every tool
call, every approval, the end of the run. So each step is stored before the next begins, at one
commit per stage of a turn rather than one per record. The one exception: calls of ``inward``
tools only (inline, synchronous, touching nothing outside the run, so running one again changes
nothing) run without a commit before them; the model turn that asked for them, its ledger row and
audit entry, the calls and their results are stored together by the commit before the next model
call (one commit a turn). A process that dies while such a tool runs loses that turn, its ledger
row and ``model.call`` entry with it, as one dying between the model's answer and the commit
before the calls always could; the run resumes from its last commit and asks the model again.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from sovereign.agent import compaction as cmp
from sovereign.agent._guard import RunGuard
from sovereign.agent._view import TranscriptView
from sovereign.agent._accept import INVALID_CALL, Accepting, Invalid, corrections_since_progress
from sovereign.agent._fix_search import FIX, FixSearching
from sovereign.agent.answer_check import call_markup, usage_of
from sovereign.agent.budget import RunUsage
from sovereign.agent.code_mode import CODE, CodeActing
from sovereign.agent.errors import BudgetExceededError, LoopDetectedError, NoValidActionError
from sovereign.agent.forced_answer import forced_answer_request
from sovereign.agent.loop_detect import LoopDetector
from sovereign.agent.opening import opening_turn
from sovereign.agent.planned import planned_outcome, planned_turn_of
from sovereign.agent.prompts import prompt
from sovereign.agent.steps import (
    FinalAnswerStep,
    ModelCallStep,
    NoticeStep,
    Step,
    SummaryStep,
    TaskStep,
    ToolCallStep,
    ToolResultStep,
    VerificationStep,
)
from sovereign.agent.verify import parse_verdict, verification_request, verifier_model_name
from sovereign.errors import SovereignError, SpendCapExceededError
from sovereign.governance.governor import CallRecord
from sovereign.governance.injection import unmark_for_write, withhold_injections
from sovereign.finops.ledger import price
from sovereign.kernel.messages import ChatRequest, ChatResponse, Thinking, ToolCall, ToolChoice, Usage
from sovereign.tools.base import ToolArgumentError, ToolContext, ToolError

if TYPE_CHECKING:
    from collections.abc import Callable
    from sqlite3 import Connection

    from sovereign.agent.agent import Agent
    from sovereign.agent.runner import Runner
    from sovereign.kernel.protocol import Model
    from sovereign.kernel.registry import PriceSheet
    from sovereign.tools.base import Tool

MODEL, TOOLS, VERIFY, DONE = "model", "tools", "verify", "done"
_MIN_OUTPUT = 16


@dataclass
class Session(CodeActing, Accepting, FixSearching):
    runner: Runner
    agent: Agent
    run_id: str
    model: Model
    model_name: str
    window: int
    steps: list[Step]
    spent: RunUsage
    detector: LoopDetector
    guard: RunGuard | None = None
    """Governance of this execution (injection guard, visibility, scopes, audit, memory)."""
    journal: Any = None
    """The governed model's ``Journal`` (its reservation joins the commit before each call)."""
    govern: Callable[[Model], Model] | None = None
    """Puts another model of the run (a verifier) behind the governed path."""
    closing: Callable[[Connection], None] | None = None
    """A write that joins the run's final commit (the spend lease's close, when it shares the
    run store's database)."""
    answer: str | None = None
    verify_failures: int = 0
    final: FinalAnswerStep | None = None
    force_answer: bool = False
    """Set by a loop nudge: the next turn offers no tools, so even a small model must answer."""
    resample: bool = False
    """Set after a repeated code block: the next turn is sampled, not greedy."""
    invalid_actions: int = 0
    """Invalid actions in a row (each sent back with a correction); past the agent's
    ``max_corrections`` the run fails."""
    grounding_nudges: int = 0
    answer_note: str = ""
    fix_searched: bool = False
    """Set once the run's fix search ran (``_fix_search``)."""
    held_answer: str | None = None
    """The answer weighed after the fix search (the FIX state)."""
    """Said in the stop reason of an answer taken with a caveat (files it never read)."""
    view: TranscriptView | None = None
    _tool_specs: list = field(default_factory=list)
    _tools_estimate: dict[Any, int] = field(default_factory=dict)
    _prices: dict[str, PriceSheet] = field(default_factory=dict)
    _stored_totals: tuple = ()
    _code_arguments: dict[str, str] = field(default_factory=dict)
    _code_state: dict | None = None
    _staged: list[Step] = field(default_factory=list)
    _staged_writes: list[Callable[[Connection], None]] = field(default_factory=list)

    # --- driver --------------------------------------------------------------------------------

    async def drive(self, state: str) -> FinalAnswerStep:
        handlers = {MODEL: self.model_state, TOOLS: self.tools_state, VERIFY: self.verify_state,
                    CODE: self.code_state, FIX: self.fix_state}
        if self.guard is None:
            self.guard = RunGuard.build(self.agent, self.run_id, self.task_step().task,
                                        approver=self.runner.approver, services=self.runner.services)
        self._tool_specs = [t.spec() for t in self.guard.offered(self.agent.tools)]
        self.view = TranscriptView(self.steps)
        self.invalid_actions, self.grounding_nudges = corrections_since_progress(self.steps)
        try:
            if state == MODEL:
                state = self.opening_move()
            while state != DONE:
                state = await handlers[state]()
        except NoValidActionError as exc:
            await self.finish("failed", f"model could not produce a valid action: {exc.message}",
                              self.partial_answer(exc.message), partial=True)
        except BudgetExceededError as exc:
            await self.finish("stopped", f"budget {exc.limit}: {exc.message}", self.partial_answer(exc.message), partial=True)
        except LoopDetectedError as exc:
            await self.finish("stopped", f"loop detected: {exc.message}", self.partial_answer(exc.message), partial=True)
        except SpendCapExceededError as exc:
            await self.finish("stopped", exc.message, self.partial_answer(exc.message), partial=True)
        except asyncio.CancelledError:
            await self.finish("cancelled", "cancelled", self.partial_answer("cancelled"), partial=True)
            raise
        except SovereignError as exc:
            await self.finish("failed", f"{type(exc).__name__}: {exc.message}", self.partial_answer(exc.message), partial=True)
        except BaseException as exc:
            await self.finish("failed", f"internal error: {type(exc).__name__}: {exc}", self.partial_answer(str(exc)), partial=True)
            raise
        assert self.final is not None
        return self.final

    # --- states --------------------------------------------------------------------------------

    def opening_move(self) -> str:
        """A fresh run whose task names workspace files starts with the runtime reading them
        (``agent/opening.py``); any other run starts with the model."""
        if not self.agent.read_named_files or any(isinstance(s, ModelCallStep) for s in self.steps):
            return MODEL
        offered = {spec.name for spec in self._tool_specs}
        turn = opening_turn(self.task_step().task, self.workspace_root(), self.agent.mode, offered)
        if turn is None:
            return MODEL
        self.stage(turn)
        return CODE if self.agent.mode == "code" else TOOLS

    async def model_state(self) -> str:
        """Ask the model for the next move: tool calls (→ TOOLS) or an answer (→ VERIFY)."""
        if planned_turn_of(self.steps) is not None:  # its call has run: its result is the answer
            await self.finish(*planned_outcome(self.steps))
            return DONE
        max_tokens = self.output_cap(self.agent.max_tokens)
        forced = self.force_answer and self.agent.mode != "code"
        size = None if forced else await self.compact_if_needed(max_tokens)
        request = self.agent_request(max_tokens)
        step = ModelCallStep(model=self.model_name)
        response = await self.call_model(self.model, request, step, is_step=True, estimate=size)
        message = response.message
        step.content, step.reasoning = message.content, message.reasoning_content
        step.tool_calls, step.finish_reason = list(message.tool_calls), response.finish_reason
        if self.agent.mode == "code":
            self.stage(step)
            return self.read_code_turn(step)
        if not step.tool_calls and step.content:
            rest, recovered = self.recover_calls(step.content)
            if request.tool_choice.mode == "none":
                # A turn that must answer never runs calls: a small model told to stop repeating
                # a call often writes it again after its answer; the answer is what is left.
                step.content = rest if recovered else step.content
            else:
                step.content, step.tool_calls = rest, recovered
        self.stage(step)
        if step.tool_calls:
            return TOOLS
        return self.consider_answer(step.content)

    async def tools_state(self) -> str:
        """Run the pending tool calls of the last model turn (concurrently), then go back to MODEL."""
        calls, started = self.turn_calls()
        runnable: list[tuple[ToolCall, Tool, dict[str, Any]]] = []
        invalid: list[str] = []
        for call in calls:
            verdict = await self.screen(call, started.get(call.id))
            if isinstance(verdict, str):
                refusal = self.refused(call, verdict)
                if isinstance(verdict, Invalid):
                    refusal.error = INVALID_CALL
                    invalid.append(verdict)
                self.stage(refusal)
            else:
                runnable.append((call, *verdict))
        if invalid and len(invalid) == len(calls):
            self.correct(invalid[-1].removeprefix("error: ").split(". ")[0], None)  # the refusals say what to fix
        elif calls:
            self.invalid_actions = 0
        allowed = self.agent.budget.tool_calls_allowed(self.spent, len(runnable))
        self.spent.tool_calls += allowed  # reserved before any starts: concurrent calls cannot overshoot
        for call, tool, _ in runnable[:allowed]:
            if call.id not in started:
                self.stage(self.call_step(call, tool))
        inward = allowed > 0 and all(tool.inward for _, tool, _ in runnable[:allowed])
        if not inward:
            self.commit()  # the model turn and the calls about to start are stored before any runs
        before = len(self.detector.seen)
        if allowed == 1 or inward:  # inward calls never await: run in turn, their results stored together
            for job in runnable[:allowed]:
                await self.execute(*job, concurrent=False)
        elif allowed:
            await asyncio.gather(*(self.execute(*job, concurrent=True) for job in runnable[:allowed]))
        if allowed < len(runnable):
            for call, _, _ in runnable[allowed:]:
                self.stage(self.refused(call, "not run: the run's tool-call budget is spent"))
            raise BudgetExceededError(
                f"tool-call limit reached ({self.agent.budget.max_tool_calls} calls)", limit="max_tool_calls"
            )
        if self.detector.end_turn(len(self.detector.seen) > before):
            await self.loop_signal(f"{self.detector.stale_turns} turns without new results")
        return MODEL

    async def verify_state(self) -> str:
        """Check the answer (if the agent asks for it); a failed check sends the agent back."""
        verifier = verifier_model_name(self.agent.verify, self.model_name)
        if verifier is None:
            await self.finish("completed", "final answer" + self.answer_note, self.answer)
            return DONE
        model = self.model if verifier == self.model_name else await self.runner.resolve_model(verifier)
        if model is not self.model and self.govern is not None:
            model = self.govern(model)
        task = self.task_step().task
        request = verification_request(verifier, task, self.steps, self.answer or "", window=self.window)
        step = VerificationStep(model=verifier, passed=False)
        response = await self.call_model(model, request, step, is_step=False)
        step.passed, step.critique = parse_verdict(response.message.content)
        self.stage(step)
        if step.passed:
            await self.finish("completed", "final answer (verified)" + self.answer_note, self.answer, verified=True)
            return DONE
        self.verify_failures += 1
        if self.verify_failures > self.agent.max_verify_retries:
            await self.finish("completed", "final answer (verification failed, retries spent)", self.answer, verified=False)
            return DONE
        return MODEL

    # --- model calls ---------------------------------------------------------------------------

    def output_cap(self, wanted: int) -> int:
        room = self.agent.budget.output_room(self.spent)
        if room is not None:
            room -= self.thinking_tokens()
            if room < min(_MIN_OUTPUT, wanted):
                raise BudgetExceededError(
                    f"output token limit: {self.spent.usage.completion_tokens} of "
                    f"{self.agent.budget.max_output_tokens} used", limit="max_output_tokens")
            return min(wanted, room)
        return wanted

    def thinking_tokens(self) -> int:
        return (self.agent.thinking_budget or 256) if self.agent.thinking else 0

    def agent_request(self, max_tokens: int) -> ChatRequest:
        thinking = Thinking(enabled=True, budget_tokens=self.thinking_tokens()) if self.agent.thinking else Thinking()
        if self.agent.mode == "code":
            self.force_answer = False
            return self.code_request(max_tokens, thinking)
        if self.force_answer:
            self.force_answer = False
            return forced_answer_request(self.model_name, self.task_step().task, self.steps, window=self.window,
                                         max_tokens=max_tokens, temperature=self.agent.temperature, thinking=thinking)
        choice = ToolChoice(mode="auto")
        return ChatRequest(
            model=self.model_name, messages=list(self.view.messages), max_tokens=max_tokens,
            temperature=self.agent.temperature, tools=list(self._tool_specs), tool_choice=choice, thinking=thinking,
        )

    async def call_model(self, model: Model, request: ChatRequest, step: Step, *, is_step: bool,
                         estimate: int | None = None) -> ChatResponse:
        """Budget-check, call, account (usage, cost, ledger) one model call; errors are recorded.

        ``estimate``: the prompt's size when the caller already knows it (the agent's own turns)."""
        if estimate is None:
            estimate = self.estimate(request.messages, request.tools, self.runner.token_counter(model),
                                     thinking=request.thinking.enabled)
        reasoning = (request.thinking.budget_tokens or 0) if request.thinking.enabled else 0
        worst_output = (request.max_tokens or self.agent.max_tokens) + reasoning
        prices = self._prices.get(request.model)
        if prices is None:
            prices = self._prices[request.model] = self.runner.prices_for(request.model)
        self.agent.budget.check_model_call(self.spent, prompt_tokens=estimate, max_output_tokens=worst_output,
                                           prices=prices, is_step=is_step)
        if getattr(model, "journal", None) is not self.journal or self.journal is None:
            self.commit()  # else the governed model commits the steps with its reservation
        started = time.perf_counter()
        time_left = self.agent.budget.time_left(self.spent)
        settled_before = getattr(model, "last", None)
        try:
            # asyncio.timeout, not wait_for, which on Python 3.11 loses a cancellation (a run
            # cancelled as its model call returned would go on)
            async with asyncio.timeout(time_left):
                response = await model.complete(request)
        except TimeoutError:
            raise BudgetExceededError("time limit reached during a model call", limit="max_wall_s") from None
        except SovereignError as exc:
            step.error = f"{type(exc).__name__}: {exc.message}"
            self.append(step.timed(started))
            raise
        step.timed(started)
        usage = response.usage if response.usage.requests else Usage(
            prompt_tokens=response.usage.prompt_tokens, cached_tokens=response.usage.cached_tokens,
            completion_tokens=response.usage.completion_tokens,
            reasoning_tokens=response.usage.reasoning_tokens, requests=1)
        step.usage = usage
        settled = getattr(model, "last", None)
        if isinstance(settled, CallRecord) and settled is not settled_before:
            step.cost_usd = settled.cost_usd  # what the ledger holds (a local model's energy estimate too)
        else:
            step.cost_usd = price(usage, prices)
        self.spent.usage = self.spent.usage + usage
        self.spent.cost_usd += step.cost_usd
        if is_step:
            self.spent.steps += 1
        return response

    def estimate(self, messages, tools, counter, *, thinking: bool) -> int:
        """Prompt estimate; the tools' share is computed once per set of tools."""
        return cmp.estimate_tokens(messages, [], counter, thinking=thinking) + self.tools_estimate(tools, counter)

    def tools_estimate(self, tools, counter) -> int:
        key: Any = "agent" if tools is self._tool_specs else tuple(t.name for t in tools)
        tools_part = self._tools_estimate.get(key)
        if tools_part is None:
            tools_part = self._tools_estimate[key] = cmp.tools_tokens(tools, counter)
        return tools_part

    def view_estimate(self, counter) -> int:
        """The size of the agent's next prompt (transcript, tools, fixed parts)."""
        assert self.view is not None
        return (self.view.tokens(counter) + self.tools_estimate(self._tool_specs, counter)
                + cmp.fixed_tokens(thinking=self.agent.thinking))

    # --- tool calls ----------------------------------------------------------------------------

    def turn_calls(self) -> tuple[list[ToolCall], dict[str, ToolCallStep]]:
        """The last model turn's calls that have no result yet, and the call steps already stored
        for them (a resumed run); only the steps since that turn are read."""
        done: set[str] = set()
        started: dict[str, ToolCallStep] = {}
        for step in reversed(self.steps):
            if isinstance(step, ModelCallStep) and step.error is None:
                return [call for call in step.tool_calls if call.id not in done], started
            if isinstance(step, ToolResultStep):
                done.add(step.call_id)
            elif isinstance(step, ToolCallStep):
                started[step.call_id] = step
        return [], started

    async def screen(self, call: ToolCall, prior: ToolCallStep | None, *,
                     loops: bool = True) -> str | tuple[Tool, dict[str, Any]]:
        """The tool and validated arguments of ``call`` if it may run, or why not (unknown or
        forbidden tool, bad arguments, a loop unless ``loops`` is off, the injection guard, no
        approval)."""
        assert self.guard is not None
        tool = self.agent.tool(call.name)
        if tool is None:
            return Invalid(f"error: there is no tool '{call.name}'. The tools are: {self.usage()}")
        forbidden = self.guard.forbidden(call.name)
        if forbidden is not None:
            return forbidden
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentError as exc:
            return Invalid(f"error: {exc.message}. Usage: {usage_of([tool.spec()])}")
        if loops and prior is None and self.detector.is_repeat(call.name, call.arguments):
            if not self.detector.should_nudge():
                raise LoopDetectedError(f"'{call.name}' called again with the same arguments {call.arguments}")
            self.force_answer = True
            return prompt("repeat_call").format(previous=self.detector.previous_result(call.name, call.arguments)[:500])
        needs_approval = tool.needs_approval and (prior is None or not prior.approved)
        if prior is not None and not needs_approval:
            return tool, arguments  # it passed the gate before the run was interrupted
        refusal = await self.guard.check(tool, arguments, call.id, needs_approval=needs_approval, gate=prior is None,
                                         before_wait=self.commit)
        return (tool, arguments) if refusal is None else refusal

    def refused(self, call: ToolCall, text: str) -> ToolResultStep:
        return ToolResultStep(call_id=call.id, name=call.name, content=text, ok=False, executed=False)

    def call_step(self, call: ToolCall, tool: Tool) -> ToolCallStep:
        """The record that a call is about to start (a call with no result was interrupted)."""
        assert self.guard is not None
        approved = tool.needs_approval or call.id in self.guard.approved
        return ToolCallStep(call_id=call.id, name=call.name, arguments=call.arguments,
                            approved=True if approved else None)

    async def execute(self, call: ToolCall, tool: Tool, arguments: dict[str, Any], *, concurrent: bool,
                      in_code: bool = False) -> ToolResultStep:
        """Run one call, in an ``execute_tool`` span when the runner traces."""
        tracing = self.runner.tracing
        if tracing is None:
            return await self.run_tool(call, tool, arguments, concurrent=concurrent, in_code=in_code)
        with tracing.tool_call(call.name, call.id, arguments=call.arguments, description=tool.description) as span:
            step = await self.run_tool(call, tool, arguments, concurrent=concurrent, in_code=in_code)
            tracing.end_tool(span, ok=step.ok, error=step.error, result=step.content)
        return step

    async def run_tool(self, call: ToolCall, tool: Tool, arguments: dict[str, Any], *,
                       concurrent: bool, in_code: bool = False) -> ToolResultStep:
        """Run one call (its call step is already stored). A result is stored at once while other
        calls still run (so a crash never loses it), else with the next commit.

        ``in_code``: a call from the agent's code, which gets the whole result as it is (the
        guard still observes it); the model sees the code's output instead."""
        assert self.guard is not None
        context = None
        if tool.takes_context:
            context = ToolContext(workspace=self.runner.workspace, run_id=self.run_id, agent=self.agent.name,
                                  owner=self.agent.owner, services=self.runner.services,
                                  extras={"access": self.guard.access} if self.guard.access is not None else {})
            if getattr(self.model, "scope", None) is not None:  # the run's governed scope, for tools that call models
                context.extras["scope"] = self.model.scope
        if tool.effects.acts_on_world and isinstance(arguments.get("content"), str) \
                and isinstance(arguments.get("path"), str):
            # a model writing back text it read copies the guard's marks with it
            path = arguments["path"]
            arguments = {**arguments, "content": unmark_for_write(arguments["content"], lambda: self.current_text(path))}
        started = time.perf_counter()
        step = ToolResultStep(call_id=call.id, name=call.name, content="", in_code=in_code)
        time_left = self.agent.budget.time_left(self.spent)
        try:
            if tool.on_loop:  # returns without awaiting: a timeout could never fire
                value = await tool.invoke(arguments, context)
            else:
                async with asyncio.timeout(time_left):
                    value = await tool.invoke(arguments, context)
            text = self.render(value, cut=not in_code)
            seen = self.guard.observe(tool, text)
            step.content = text if in_code else seen
        except (ToolArgumentError, ToolError) as exc:
            step.ok, step.error = False, exc.message
            step.content = self.guard.observe(tool, f"error: {exc.message}")
        except TimeoutError:
            step.ok, step.error = False, "time limit"
            step.content = "error: the run's time limit was reached while this tool ran"
        except Exception as exc:  # a bug in the tool: stored for the trace, then propagated
            step.ok, step.error = False, f"{type(exc).__name__}: {exc}"
            step.content = f"error: {step.error}"
            self.append(step.timed(started))
            raise
        self.stage(step.timed(started))
        if concurrent:
            self.commit()
        self.detector.record_call(call.name, call.arguments, step.content)
        return step

    def render(self, value: Any, *, cut: bool = True) -> str:
        text = value if isinstance(value, str) else orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        limit = self.agent.max_tool_result_chars
        if cut and len(text) > limit:
            text = text[:limit] + f"\n[cut: {len(text) - limit} more characters not shown]"
        return text

    # --- loops, compaction, the end ------------------------------------------------------------

    async def loop_signal(self, reason: str) -> None:
        if not self.detector.should_nudge():
            raise LoopDetectedError(reason)
        if self.agent.mode == CODE:
            self.fresh_start()
            return
        self.force_answer = True
        self.stage(NoticeStep(text=prompt("loop_nudge").format(reason=reason), reason="loop"))

    async def compact_if_needed(self, max_tokens: int) -> int:
        """Summarise older steps while the next prompt would crowd the window; returns its size."""
        counter = self.runner.token_counter(self.model)
        room = (self.window - max_tokens - self.thinking_tokens()) * self.agent.compaction.threshold
        size = self.view_estimate(counter)
        for _ in range(3):
            plan = cmp.plan_compaction(self.steps, self.agent.compaction.keep_recent) if size > room else None
            if plan is None:
                break
            await self.compact(*plan)
            size = self.view_estimate(counter)
        return size

    async def compact(self, first: int, last: int) -> None:
        covered = [s for s in self.steps if first <= s.index <= last]
        previous = next((s for s in reversed(self.steps) if isinstance(s, SummaryStep)), None)
        facts = cmp.facts_of(covered)
        hook = self.runner.before_compaction
        self.commit()
        if hook is not None:
            outcome = hook(facts)
            if inspect.isawaitable(outcome):
                await outcome
        assert self.guard is not None
        await self.guard.flush_memory([m for s in covered for m in s.to_messages()], self.memory_call, self.model_name)
        step = SummaryStep(text="", first_index=previous.first_index if previous else first,
                           last_index=last, facts=facts)
        request = cmp.summary_request(self.model_name, self.task_step().task, previous.text if previous else None,
                                      covered, window=self.window, max_tokens=self.agent.compaction.summary_max_tokens)
        try:
            response = await self.call_model(self.model, request, step, is_step=False)
            step.text = (response.message.content or "").strip() or cmp.extractive_summary(covered)
        except BudgetExceededError:
            step.text = ((previous.text + " | ") if previous else "") + cmp.extractive_summary(covered)
        self.stage(step)

    async def memory_call(self, request: ChatRequest) -> ChatResponse:
        """A model call made for memory (fact distillation), budgeted and accounted like any other."""
        return await self.call_model(self.model, request, ModelCallStep(model=self.model_name), is_step=False)

    def task_step(self) -> TaskStep:
        return next(s for s in self.steps if isinstance(s, TaskStep))

    def partial_answer(self, reason: str) -> str:
        if self.answer:
            return self.answer
        # Tool results are untrusted: a line that tries to instruct is not echoed to the user.
        results = [s.content for s in self.steps if isinstance(s, ToolResultStep) and s.ok][-3:]
        results = [withhold_injections(text) for text in results]
        said = [s.content for s in self.steps if isinstance(s, ModelCallStep) and s.content
                and call_markup(s.content) is None][-1:]
        body = "\n".join(f"- {text[:300]}" for text in said + results) or "- nothing yet"
        return prompt("partial").format(reason=reason) + "\n" + body

    async def finish(self, status: str, reason: str, answer: str | None, *, partial: bool = False,
                     verified: bool | None = None) -> None:
        if answer and self.guard is not None and self.guard.taint.untrusted:
            # An answer built from untrusted data (code passing a file through) does not carry
            # the lines of it that try to instruct — the model never saw them either.
            answer = withhold_injections(answer)
        self.final = FinalAnswerStep(answer=answer, status=status, stop_reason=reason, partial=partial,
                                     verified=verified)
        self.stage(self.final)
        self._staged_writes.append(lambda conn: self.runner.store.set_status_in(
            conn, self.run_id, status, stop_reason=reason, answer=answer, spent=self.spent))
        if self.closing is not None:
            self._staged_writes.append(self.closing)
        self.commit()  # the final step, the run's status (and the lease's close): one transaction
        self.runner.emit(self.run_id, "status", data={"status": status, "stop_reason": reason})

    # --- durability ----------------------------------------------------------------------------

    def stage(self, step: Step) -> None:
        """Add ``step`` to the run; it is stored by the next ``commit`` (before anything acts)."""
        step.index = len(self.steps)
        self.steps.append(step)
        self._staged.append(step)
        assert self.view is not None
        self.view.add(step, self.steps)

    def append(self, step: Step) -> None:
        """Add ``step`` and store it (with everything staged) now."""
        self.stage(step)
        self.commit()

    def defer(self, write: Callable[[Connection], None]) -> None:
        """Make ``write`` part of the next commit."""
        self._staged_writes.append(write)

    def commit_with(self, write: Callable[[Connection], Any]) -> Any:
        """Commit the staged steps and ``write`` in one transaction and return what ``write``
        returned; if ``write`` raises (a spend cap), the steps are committed without it."""
        out: list[Any] = []
        before = list(self._staged), list(self._staged_writes), self._stored_totals
        self._staged_writes.append(lambda conn: out.append(write(conn)))
        try:
            self.commit()
        except BaseException:
            self._staged, self._staged_writes, self._stored_totals = before
            self.commit()
            raise
        return out[0]

    def commit(self) -> None:
        """Store the staged steps, the run's totals (when changed) and their ledger and audit
        writes in one transaction; then tell listeners."""
        if not self._staged:
            if self._staged_writes:
                writes, self._staged_writes = self._staged_writes, []
                with self.runner.store.db.transaction() as conn:
                    for write in writes:
                        write(conn)
            return
        steps, writes = self._staged, self._staged_writes
        self._staged, self._staged_writes = [], []
        u = self.spent.usage
        totals = (u.requests, u.prompt_tokens, u.completion_tokens, self.spent.steps, self.spent.tool_calls)
        changed = totals != self._stored_totals or isinstance(steps[-1], FinalAnswerStep)
        self._stored_totals = totals
        results = [s for s in steps if isinstance(s, ToolResultStep)]
        audited = self.guard is not None and self.guard.audit is not None and bool(results)
        shared = audited and self.runner.shares_database(self.guard.audit.db)
        if shared:
            writes.append(lambda conn: self.record_results(results, conn))
        self.runner.store.append(self.run_id, steps, self.spent if changed else None,
                                 also=writes)
        if audited and not shared:
            self.record_results(results, None)
        for step in steps:
            self.runner.emit(self.run_id, "step", step=step)

    def record_results(self, results: list[ToolResultStep], conn: Connection | None) -> None:
        assert self.guard is not None
        for step in results:
            self.guard.record(step, self.arguments_of(step.call_id), conn)

    def arguments_of(self, call_id: str) -> str:
        if call_id in self._code_arguments:  # a call from code mode: no model turn names it
            return self._code_arguments[call_id]
        for step in reversed(self.steps):
            if isinstance(step, ModelCallStep):
                for call in step.tool_calls:
                    if call.id == call_id:
                        return call.arguments
        return ""
