"""What the runtime accepts as an answer, with the deterministic scripted model (sovereign.testing):
tool-call syntax written as text is never the final answer (a valid call in it is run, anything
else gets a correction naming the tools and their arguments), unknown tools and bad arguments go
back with a precise correction, corrections count toward the budget, a model that never recovers
ends the run as ``failed``, and an answer given without reading a file the task names is sent
back (grounding)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.agent.answer_check import call_markup, mentioned_paths, unread_paths
from sovereign.kernel.messages import ChatRequest
from sovereign.store import Database
from sovereign.testing import ScriptedModel, text_response, tool_response
from sovereign.tools import builtin_tools

MARKUP = '<tool_call>\n{"name": "read_csv", "arguments": {"file": "sales.csv"}}\n</tool_call>'


def _agent(workspace: Path, **kwargs) -> Agent:
    tools = [t for t in builtin_tools(workspace) if t.name in ("read_file", "list_files", "calculator")]
    kwargs.setdefault("read_named_files", False)  # these scripts make their own first move
    return Agent(name="helper", tools=tools, **kwargs)


def _run(model: ScriptedModel, agent: Agent, task: str, workspace: Path | None = None, store: RunStore | None = None):
    runner = Runner(model=model, store=store or RunStore(Database(":memory:")), workspace=workspace)
    return asyncio.run(runner.run(agent, task))


def _user_texts(request: ChatRequest) -> list[str]:
    return [m.content or "" for m in request.messages if m.role in ("user", "tool")]


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "sales.csv").write_text("region,amount\nnorth,120\nsouth,80\neast,45\nwest,57\n")
    return root


# --- the checks themselves -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    MARKUP,
    'The answer: {"name": "calculator", "arguments": {"expression": "2+2"}}',
    '```json\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n```',
    '{"arguments": {"expression": "1"}, "name": "calculator"}',
    "</tool_call>",
])
def test_call_markup_is_recognised(text):
    assert call_markup(text) is not None


@pytest.mark.parametrize("text", ["4", "The total is 302.", 'The file says {"a": 1}.', "name: Ann, arguments: none"])
def test_plain_answers_are_not_markup(text):
    assert call_markup(text) is None


def test_paths_named_in_a_task(workspace):
    assert mentioned_paths("Sum amount in sales.csv and data/q3.json, then write out.txt.") == [
        "sales.csv", "data/q3.json", "out.txt"]
    assert mentioned_paths("What is 2.5 * 4? Version 1.2.3.") == []
    assert unread_paths("total of sales.csv into out.txt", workspace, []) == ["sales.csv"]  # out.txt: no such file
    assert unread_paths("total of sales.csv", workspace, ['{"path": "sales.csv"}']) == []
    assert unread_paths("total of sales.csv", None, []) == []


# --- markup as an answer ---------------------------------------------------------------------------


def test_markup_answer_gets_a_correction_then_a_plain_answer_is_accepted(workspace):
    script = ScriptedModel([text_response(MARKUP), tool_response(("read_file", '{"path": "sales.csv"}')),
                            text_response("The total is 302.")])
    result = _run(script, _agent(workspace), "What is the total of the amount column in sales.csv?", workspace)
    script.assert_complete()
    assert result.status == "completed" and result.answer == "The total is 302."
    correction = _user_texts(script.requests[1])[-1]
    assert "Not accepted" in correction and "<tool_call> tag" in correction
    assert "read_file(path, offset?, max_bytes?)" in correction and "calculator(expression)" in correction
    notices = [s for s in result.steps if s.kind == "notice"]
    assert [n.reason for n in notices] == ["correction"]
    assert result.spent.steps == 3  # the corrected turn counts toward the budget


def test_a_valid_call_written_as_text_is_run(workspace):
    written = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>'
    script = ScriptedModel([text_response(written), text_response("4")])
    result = _run(script, _agent(workspace), "What is 2+2?", workspace)
    script.assert_complete()
    assert result.ok and result.answer == "4"
    turn = next(s for s in result.steps if s.kind == "model_call")
    assert [c.name for c in turn.tool_calls] == ["calculator"]
    assert _user_texts(script.requests[1])[-1] == "4"  # the calculator's result


def test_markup_every_turn_fails_the_run_with_its_own_reason(workspace):
    script = ScriptedModel([text_response(MARKUP)] * 3)
    store = RunStore(Database(":memory:"))
    result = _run(script, _agent(workspace, max_corrections=2), "What is 2+2?", workspace, store)
    script.assert_complete()
    assert result.status == "failed"
    assert result.stop_reason.startswith("model could not produce a valid action")
    assert "tool_call" not in (result.answer or "")
    assert result.spent.steps == 3
    assert store.get(result.run_id).status == "failed"


def test_corrections_count_toward_the_step_budget(workspace):
    script = ScriptedModel([text_response(MARKUP)] * 2)
    result = _run(script, _agent(workspace, budget=Budget(max_steps=2)), "What is 2+2?", workspace)
    assert result.status == "stopped" and "max_steps" in result.stop_reason


def test_empty_reply_is_corrected(workspace):
    script = ScriptedModel([text_response(""), text_response("4")])
    result = _run(script, _agent(workspace), "What is 2+2?", workspace)
    assert result.ok and result.answer == "4"
    assert "reply was empty" in _user_texts(script.requests[1])[-1]


# --- unknown tools, bad arguments -----------------------------------------------------------------


def test_unknown_tool_and_bad_arguments_get_precise_corrections(workspace):
    script = ScriptedModel([
        tool_response(("sum", '{"values": [1, 2]}')),
        tool_response(("calculator", '{"expr": "1+2"}')),
        tool_response(("calculator", '{"expression": "1+2"}')),
        text_response("3"),
    ])
    result = _run(script, _agent(workspace), "What is 1+2?", workspace)
    script.assert_complete()
    assert result.ok and result.answer == "3"
    unknown = _user_texts(script.requests[1])[-1]
    assert "there is no tool 'sum'" in unknown and "calculator(expression)" in unknown
    assert "read_file(path, offset?, max_bytes?)" in unknown
    bad = _user_texts(script.requests[2])[-1]
    assert "invalid arguments for 'calculator'" in bad and "Usage: calculator(expression)" in bad


def test_invalid_calls_every_turn_fail_the_run(workspace):
    script = ScriptedModel([tool_response(("sum", "{}"))] * 3)
    result = _run(script, _agent(workspace, max_corrections=2), "What is 1+2?", workspace)
    script.assert_complete()
    assert result.status == "failed"
    assert "model could not produce a valid action" in result.stop_reason and "sum" in result.stop_reason


def test_a_valid_call_resets_the_count(workspace):
    bad = tool_response(("sum", "{}"))
    script = ScriptedModel([bad, bad, tool_response(("calculator", '{"expression": "1+1"}')), bad, bad,
                            text_response("2")])
    result = _run(script, _agent(workspace, max_corrections=2), "What is 1+1?", workspace)
    script.assert_complete()
    assert result.ok and result.answer == "2"


# --- grounding -------------------------------------------------------------------------------------


def test_answer_without_reading_the_named_file_is_sent_back(workspace):
    script = ScriptedModel([
        text_response("The total is 500."),
        tool_response(("read_file", '{"path": "sales.csv"}')),
        text_response("The total is 302."),
    ])
    result = _run(script, _agent(workspace), "What is the total of the amount column in sales.csv?", workspace)
    script.assert_complete()
    assert result.ok and result.answer == "The total is 302." and result.stop_reason == "final answer"
    nudge = _user_texts(script.requests[1])[-1]
    assert "without reading sales.csv" in nudge and "read_file" in nudge
    assert [s.reason for s in result.steps if s.kind == "notice"] == ["grounding"]


def test_grounding_gives_up_after_two_nudges_and_says_so(workspace):
    script = ScriptedModel([text_response("500")] * 3)
    result = _run(script, _agent(workspace), "What is the total in sales.csv?", workspace)
    script.assert_complete()
    assert result.ok and result.answer == "500"
    assert result.stop_reason == "final answer (not read: sales.csv)"


def test_no_grounding_check_for_files_that_do_not_exist_or_tasks_without_files(workspace):
    for task in ("What is 2+2?", "Describe what report.csv would contain."):
        script = ScriptedModel([text_response("4")])
        result = _run(script, _agent(workspace), task, workspace)
        script.assert_complete()
        assert result.ok and not [s for s in result.steps if s.kind == "notice"]


def test_corrections_in_a_row_survive_a_resume(workspace, tmp_path):
    store = RunStore(Database(tmp_path / "runs.db"))
    first = ScriptedModel([text_response(MARKUP), text_response(MARKUP)])
    agent = _agent(workspace, max_corrections=2, budget=Budget(max_steps=2))
    result = _run(first, agent, "What is 2+2?", workspace, store)
    assert result.status == "stopped"
    then = ScriptedModel([text_response(MARKUP)])
    runner = Runner(model=then, store=store, workspace=workspace)
    resumed = asyncio.run(runner.resume(result.run_id, agent=agent, budget=Budget(max_steps=5)))
    assert resumed.status == "failed" and "valid action" in resumed.stop_reason


def test_system_prompt_tells_the_agent_to_read_named_files(workspace):
    script = ScriptedModel([text_response("4")])
    _run(script, _agent(workspace), "What is 2+2?", workspace)
    system = script.requests[0].messages[0]
    assert system.role == "system" and "read it with read_file" in (system.content or "")


# --- the real embedded model -----------------------------------------------------------------------


@pytest.mark.integration
def test_real_model_answers_2_plus_2_without_markup(embedded_model, tmp_path):
    """The default agent (its mode and tools) on the 0.5B model: the answer states 4 and carries
    no tool-call syntax, whatever path the model took."""
    from sovereign.agent.agent import DEFAULT_MODE, DEFAULT_TOOLS

    workspace = tmp_path / "ws"
    workspace.mkdir()
    tools = [t for t in builtin_tools(workspace) if t.name in DEFAULT_TOOLS]
    agent = Agent(name="default", tools=tools, mode=DEFAULT_MODE, budget=Budget(max_steps=6, max_wall_s=600))
    runner = Runner(model=embedded_model, store=RunStore(Database(":memory:")), workspace=workspace)
    result = asyncio.run(runner.run(agent, "What is 2+2?"))
    assert result.status == "completed", result.stop_reason
    assert "4" in (result.answer or "") and call_markup(result.answer) is None


def test_a_turn_that_must_answer_never_runs_a_call_written_after_the_answer(workspace):
    """A repeated call is not run again; the next turn is offered no tools, and a small model
    that still writes the call after its answer has the answer taken, not the call run."""
    call = ("read_file", '{"path": "sales.csv"}')
    written = 'The total is 302.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "sales.csv"}}\n</tool_call>'
    model = ScriptedModel([tool_response(call), tool_response(call), tool_response(call), text_response(written)])
    result = _run(model, _agent(workspace, budget=Budget(max_steps=6)), "What is the total of sales.csv?", workspace)
    assert result.status == "completed", result.stop_reason
    assert result.answer == "The total is 302."
    assert [s.kind for s in result.steps].count("tool_result") == 3
    assert model.requests[-1].tool_choice.mode == "none"
