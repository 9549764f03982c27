"""The fix search, with the deterministic scripted model (sovereign.testing) and the real sandbox:
on a task that asks to fix a Python file and states a check, an answer (or a loop) that leaves the
file failing that check makes the runtime sample candidate fixes in separate requests, try each
in the sandbox without writing, and save the first that passes through its own turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sovereign.agent import Agent, AllowAll, Budget, Runner, RunStore
from sovereign.agent.fix_search import FixGoal, fix_goal, trial_code
from sovereign.agent.steps import FIX_SEARCH_MODEL
from sovereign.kernel.messages import ChatResponse
from sovereign.store import Database
from sovereign.testing import ScriptedModel, text_response
from sovereign.tools import builtin_tools
from sovereign.tools.sandbox import isolation_mode

pytestmark = pytest.mark.skipif(isolation_mode() != "bubblewrap",
                                reason="code mode without bubblewrap asks approval for every code run")

TASK = "stats.py has a bug: average([2, 4, 6]) should return 4. Fix it."
BUGGY = "def average(values):\n    return sum(values) / (len(values) + 1)\n"


def code(body: str) -> ChatResponse:
    return text_response(f"```python\n{body.strip()}\n```")


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "stats.py").write_text(BUGGY)
    return root


def _run(script: ScriptedModel, task: str, workspace: Path, **agent_options):
    tools = [t for t in builtin_tools(workspace) if t.name in ("read_file", "write_file", "list_files")]
    agent = Agent(name="fixer", mode="code", tools=tools, **agent_options)
    runner = Runner(model=script, store=RunStore(Database(":memory:")), workspace=workspace, approver=AllowAll())
    return asyncio.run(runner.run(agent, task))


def test_a_wrong_fix_answered_as_done_is_replaced_by_the_first_candidate_that_passes(workspace):
    wrong = code('write_file("stats.py", "def average(values):\\n    return sum(values) / len(values) - 1\\n")\n'
                 'final_answer("fixed stats.py")')
    script = ScriptedModel([
        wrong,
        code("def average(values):\n    return sum(values) / (len(values) - 1)"),  # candidate 1: fails
        text_response("I think it is fine."),  # candidate 2: no code
        code("def average(values):\n    return sum(values) / len(values)"),  # candidate 3: passes
    ])
    result = _run(script, TASK, workspace)
    script.assert_complete()
    assert (workspace / "stats.py").read_text() == "def average(values):\n    return sum(values) / len(values)\n"
    assert result.status == "completed" and result.answer == "Fixed stats.py: average([2, 4, 6]) now returns 4."
    candidate = script.requests[1]
    assert [m.role for m in candidate.messages] == ["system", "user"]  # a short request of its own
    asked = candidate.messages[1].content
    assert "return sum(values) / len(values) - 1" in asked  # the function as the file has it now
    assert "average([2, 4, 6]) returned 3.0, not 4" in asked and "average([2, 4, 6]) must return 4" in asked
    assert [r.temperature for r in script.requests[1:4]] == [0.3, 0.6, 0.8]
    saving = [s for s in result.steps if s.kind == "model_call" and s.model == FIX_SEARCH_MODEL]
    assert len(saving) == 1 and "write_file('stats.py'" in saving[0].content
    ran = next(s for s in result.steps if s.kind == "code" and s.index > saving[0].index)
    assert ran.error is None and ran.final == result.answer  # the check passed on the saved file
    assert result.spent.usage.requests == 4  # the candidate requests are the run's model calls


def test_a_fix_that_passes_is_not_searched_and_a_failed_search_changes_nothing(workspace):
    right = code('write_file("stats.py", "def average(values):\\n    return sum(values) / len(values)\\n")\n'
                 'final_answer("fixed stats.py")')
    script = ScriptedModel([right])
    assert _run(script, TASK, workspace).answer == "fixed stats.py"
    script.assert_complete()  # the check passed in the sandbox: no candidate was asked for
    wrong = 'write_file("stats.py", "def average(values):\\n    return 3\\n")\nfinal_answer("fixed stats.py")'
    bad = code("def average(values):\n    return sum(values)")
    script = ScriptedModel([code(wrong), bad, bad, bad, bad] + [code('final_answer("fixed stats.py")')] * 8)
    result = _run(script, TASK, workspace)
    assert (workspace / "stats.py").read_text() == "def average(values):\n    return 3\n"  # no candidate passed
    assert sum(len(r.messages) == 2 for r in script.requests) == 4  # four candidate requests
    assert not any(s.kind == "model_call" and s.model == FIX_SEARCH_MODEL for s in result.steps)
    # a task that states no check is not searched
    plain = ScriptedModel([code('final_answer("fixed")')] * 12)
    _run(plain, "stats.py has a bug somewhere. Fix it.", workspace, budget=Budget(max_steps=3))
    assert all(len(r.messages) > 2 for r in plain.requests)


def test_a_run_looping_on_a_fix_task_searches_before_it_stops(workspace):
    """Small models re-send a failing block until the loop guard stops the run: the search runs
    first, and a passing candidate is saved instead of the run ending stopped."""
    failing = code("import stats\nassert stats.average([2, 4, 6]) == 4")
    script = ScriptedModel([failing] * 6 + [code("def average(values):\n    return sum(values) / len(values)")]
                           + [failing] * 4)
    result = _run(script, TASK, workspace)
    assert result.status == "completed" and result.answer == "Fixed stats.py: average([2, 4, 6]) now returns 4."
    assert (workspace / "stats.py").read_text().endswith("return sum(values) / len(values)\n")
    assert any(s.kind == "model_call" and s.model == FIX_SEARCH_MODEL for s in result.steps)


def test_a_stated_call_with_quoted_text_is_searched_too(tmp_path):
    """Found on the real model: greet('Ana') ... should return 'Hello, Ana!' — quotes in the call
    and the value made the trial's own assertion a syntax error, so no candidate could pass."""
    (tmp_path / "hello.py").write_text("def greet(name):\n    return 'Hello, ' + name\n")
    wrong = "write_file('hello.py', read_file('hello.py').replace('Hello, ', 'Hello '))\nfinal_answer('fixed hello.py')"
    script = ScriptedModel([code(wrong), code("def greet(name):\n    return f'Hello, {name}!'")])
    result = _run(script, "greet('Ana') in hello.py should return 'Hello, Ana!' but it does not. Fix it.", tmp_path)
    asked = script.requests[1].messages[1].content
    assert "greet('Ana') returned 'Hello Ana', not 'Hello, Ana!'" in asked
    assert result.answer == "Fixed hello.py: greet('Ana') now returns 'Hello, Ana!'."
    assert (tmp_path / "hello.py").read_text() == "def greet(name):\n    return f'Hello, {name}!'\n"


def test_the_trial_runs_a_candidate_as_the_module_and_the_test_file_named_by_the_task(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "money.py").write_text("def cents(euros):\n    return euros * 10\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_money.py").write_text(
        "from app.money import cents\n\ndef test_cents():\n    assert cents(2) == 200\n")
    goal = fix_goal("The test in tests/test_money.py fails. Fix app/money.py.", "app/money.py", tmp_path)
    assert isinstance(goal, FixGoal) and goal.module == "app.money" and "def test_cents" in goal.wanted
    code_text = trial_code(goal, "def cents(euros):\n    return euros * 100\n")
    assert "sys.modules['app.money'] = module" in code_text and "import tests.test_money as checks" in code_text
    assert fix_goal("Fix app/money.py.", "app/money.py", tmp_path) is None  # no check stated


def test_three_turns_without_the_fix_start_the_search_and_the_option_turns_it_off(workspace):
    looks = [code(f"print({n})") for n in range(3)]  # different blocks: no loop, no answer
    right = code("def average(values):\n    return sum(values) / len(values)")
    script = ScriptedModel([*looks, right])
    result = _run(script, TASK, workspace)
    script.assert_complete()
    assert result.answer == "Fixed stats.py: average([2, 4, 6]) now returns 4."
    assert sum(len(r.messages) == 2 for r in script.requests) == 1  # one candidate, after the third turn
    (workspace / "stats.py").write_text(BUGGY)
    off = ScriptedModel([*looks, code('final_answer("done")')] + [code(f"final_answer({n})") for n in range(6)])
    _run(off, TASK, workspace, fix_search=False)
    assert not any(len(r.messages) == 2 for r in off.requests) and (workspace / "stats.py").read_text() == BUGGY


@pytest.mark.integration
def test_the_real_model_fixes_a_function_the_task_states_a_check_for(embedded_model_large, tmp_path):
    """On the real tools-tier model (1.5B): the bug the 1.5B never fixed on its own in the
    held-out suite (``/ (len(values) + 1)``) is fixed — by its own turns or by the search — and
    the file passes the task's check."""
    (tmp_path / "stats.py").write_text(BUGGY)
    tools = [t for t in builtin_tools(tmp_path) if t.name in ("read_file", "write_file", "list_files", "search_files")]
    agent = Agent(name="fixer", mode="code", tools=tools, model=embedded_model_large.name,
                  budget=Budget(max_steps=10, max_wall_s=600))
    runner = Runner(model=embedded_model_large, store=RunStore(Database(":memory:")), workspace=tmp_path,
                    approver=AllowAll())
    result = asyncio.run(runner.run(agent, TASK))
    namespace: dict = {}
    exec((tmp_path / "stats.py").read_text(), namespace)
    assert namespace["average"]([2, 4, 6]) == 4 and namespace["average"]([10]) == 10, result.steps[-1]
    assert result.status == "completed"
