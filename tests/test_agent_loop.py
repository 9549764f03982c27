"""The agent loop with the deterministic scripted model (sovereign.testing): tool errors go back
to the model, approvals, loop detection, self-verification with retry, and compaction."""

from __future__ import annotations

import asyncio
import json

from sovereign.agent import AllowAll, Agent, CompactionPolicy, DenyAll, LoopPolicy, Runner, RunStore
from sovereign.agent.prompts import prompt
from sovereign.agent.steps import SummaryStep, transcript
from sovereign.kernel.messages import ChatRequest, ChatResponse
from sovereign.store import Database
from sovereign.testing import FunctionModel, ScriptedModel, text_response, tool_response
from sovereign.tools import tool
from sovereign.tools.base import ToolError


def _runner(model, **kwargs) -> Runner:
    return Runner(model=model, store=RunStore(Database(":memory:")), **kwargs)


def _run(runner: Runner, agent: Agent, task: str = "do it"):
    return asyncio.run(runner.run(agent, task))


def _tool_messages(request: ChatRequest) -> list[str]:
    return [m.content or "" for m in request.messages if m.role == "tool"]


# --- tools: errors, validation, approvals --------------------------------------------------------


def test_bad_arguments_unknown_tools_and_tool_errors_go_back_to_the_model():
    @tool
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        if b == 0:
            raise ToolError("cannot divide by zero")
        return a / b

    script = ScriptedModel([
        tool_response(("divide", '{"a": "x", "b": 2}'), ("nope", "{}"), ("divide", '{"a": 1, "b": 0}')),
        tool_response(("divide", '{"a": 9, "b": 3}')),
        text_response("3"),
    ])
    result = _run(_runner(script), Agent(name="a", tools=[divide]))
    script.assert_complete()
    assert result.ok and result.answer == "3"
    errors = _tool_messages(script.requests[1])
    assert any("invalid arguments for 'divide'" in e and "a:" in e for e in errors)
    assert any("no tool 'nope'" in e for e in errors)
    assert any("cannot divide by zero" in e for e in errors)
    assert _tool_messages(script.requests[2])[-1] == "3.0"


def _risky(executed: list):
    @tool(needs_approval=True)
    def delete(path: str) -> str:
        """Delete a file."""
        executed.append(path)
        return "deleted"

    return delete


def test_needs_approval_goes_through_the_approver():
    executed: list = []
    denier = DenyAll()
    script = ScriptedModel([tool_response(("delete", '{"path": "x"}')), text_response("could not")])
    result = _run(_runner(script, approver=denier), Agent(name="a", tools=[_risky(executed)]))
    assert executed == [] and denier.asked == [(result.run_id, "delete", {"path": "x"})]
    assert "denied" in _tool_messages(script.requests[1])[0]

    script = ScriptedModel([tool_response(("delete", '{"path": "x"}')), text_response("done")])
    result = _run(_runner(script, approver=AllowAll()), Agent(name="a", tools=[_risky(executed)]))
    assert executed == ["x"] and result.answer == "done"
    call = next(s for s in result.steps if s.kind == "tool_call")
    assert call.approved is True

    script = ScriptedModel([tool_response(("delete", '{"path": "y"}')), text_response("no")])
    _run(_runner(script), Agent(name="a", tools=[_risky(executed)]))
    assert executed == ["x"] and "no approver" in _tool_messages(script.requests[1])[0]


# --- loop detection ------------------------------------------------------------------------------


def _echo_tool(executed: list, *, constant: bool = False):
    @tool
    def look(q: str) -> str:
        """Look something up."""
        executed.append(q)
        return "nothing here" if constant else f"about {q}"

    return look


def test_repeated_identical_call_is_refused_once_then_stops_the_run():
    executed: list = []
    same = ("look", '{"q": "cats"}')
    script = ScriptedModel([tool_response(same), tool_response(("look", '{"q":"cats"}')), tool_response(same)])
    agent = Agent(name="a", tools=[_echo_tool(executed)], loop=LoopPolicy(repeat_limit=1))
    result = _run(_runner(script), agent)
    script.assert_complete()
    assert executed == ["cats"]
    forced = script.requests[2]  # asked afresh, from the evidence, with no tools to call
    assert not forced.tools and forced.tool_choice.mode == "none"
    assert "about cats" in forced.messages[-1].content and not _tool_messages(forced)
    assert result.status == "stopped" and "loop detected" in result.stop_reason
    assert "about cats" in result.answer  # partial result keeps what was found


def test_no_new_information_nudges_once_then_stops():
    executed: list = []
    script = ScriptedModel([tool_response(("look", json.dumps({"q": f"q{i}"}))) for i in range(5)])
    agent = Agent(name="a", tools=[_echo_tool(executed, constant=True)], loop=LoopPolicy(stale_steps=2))
    result = _run(_runner(script), agent)
    script.assert_complete()
    notices = [s for s in result.steps if s.kind == "notice"]
    assert len(notices) == 1 and "Change course" in notices[0].text
    assert result.status == "stopped" and "turns without new results" in result.stop_reason


def test_loop_without_nudge_stops_at_once():
    executed: list = []
    script = ScriptedModel([tool_response(("look", '{"q": "a"}')), tool_response(("look", '{"q": "a"}'))])
    agent = Agent(name="a", tools=[_echo_tool(executed)], loop=LoopPolicy(repeat_limit=1, nudge=False))
    result = _run(_runner(script), agent)
    assert executed == ["a"] and "loop detected" in result.stop_reason


# --- verification --------------------------------------------------------------------------------


def test_failed_check_sends_the_agent_back_with_the_critique():
    script = ScriptedModel([
        text_response("4"),
        text_response('{"ok": false, "critique": "2+3 is not 4"}'),
        text_response("5"),
        text_response('{"ok": true}'),
    ])
    result = _run(_runner(script), Agent(name="a", verify="same"), "what is 2+3?")
    script.assert_complete()
    assert result.ok and result.answer == "5" and result.verified is True
    retry = script.requests[2].messages[-1]
    assert retry.role == "user" and "2+3 is not 4" in retry.content
    check = script.requests[1]
    assert check.response_format.type == "json_schema" and "Answer: 4" in check.messages[-1].content


def test_named_checker_model_and_retries_running_out():
    agent_model = ScriptedModel([text_response("4"), text_response("4 again")], name="worker")
    checker = ScriptedModel([text_response('{"ok": false, "critique": "wrong"}')] * 2, name="checker")
    runner = _runner({"worker": agent_model, "checker": checker})
    agent = Agent(name="a", model="worker", verify="checker", max_verify_retries=1)
    result = _run(runner, agent)
    agent_model.assert_complete()
    checker.assert_complete()
    assert result.ok and result.verified is False and "retries spent" in result.stop_reason
    assert result.answer == "4 again"


# --- compaction ----------------------------------------------------------------------------------


def _long_task_model() -> FunctionModel:
    """Reads five pages one per turn, then answers; answers summary requests with a summary."""
    turn = {"n": 0}

    def answer(request: ChatRequest) -> ChatResponse:
        if request.messages[0].content == prompt("summarise"):
            return text_response("SUMMARY: pages read so far hold the numbers.")
        turn["n"] += 1
        if turn["n"] <= 5:
            return tool_response(("read_page", json.dumps({"page": turn["n"]})))
        return text_response("total 15")

    return FunctionModel(answer, name="small")


def test_older_steps_are_summarised_near_the_context_limit():
    @tool
    def read_page(page: int) -> str:
        """Read one page."""
        return f"page {page} value {page} " + "filler " * 120

    flushed: list[list[str]] = []
    model = _long_task_model()
    agent = Agent(name="a", tools=[read_page], context_window=1200, max_tokens=64,
                  compaction=CompactionPolicy(keep_recent=2))
    runner = _runner(model, before_compaction=lambda facts: flushed.append(facts))
    result = _run(runner, agent, "sum the values of pages 1-5")
    assert result.ok and result.answer == "total 15"
    summaries = [s for s in result.steps if isinstance(s, SummaryStep)]
    assert summaries and flushed
    assert any("page 1 value 1" in fact for fact in flushed[0])
    last_agent_request = [r for r in model.requests if r.messages[0].content != prompt("summarise")][-1]
    text = " ".join(m.content or "" for m in last_agent_request.messages)
    assert "SUMMARY:" in text and "page 1 value 1" not in text
    assert last_agent_request.messages[1].content == "sum the values of pages 1-5"  # the task stays
    # nothing is dropped: every step is still stored
    stored = runner.store.get(result.run_id).steps
    assert sum(1 for s in stored if s.kind == "tool_result") == 5
    assert len(transcript(stored)) < len([s for s in stored if s.to_messages()])
