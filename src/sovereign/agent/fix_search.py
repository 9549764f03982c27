"""Generate and test, for a task that asks to fix a Python file and states how to check the fix.

A small model often writes the same wrong fix again and again inside a long transcript, yet asked
in a short, separate request — the function, the task, how it fails — it writes a right one among
a few samples. The runtime samples a few candidate fixes that way, tries each against the check the
task states ("average([2, 4, 6]) should return 4", "the test in tests/test_money.py fails") in the
sandbox without writing anything, and saves the first that passes through an ordinary code turn
of its own, which answers with what the check showed. This module builds the pieces: the candidate request, the trial code that runs one
candidate as the module, and the block that saves the winner; ``_fix_search`` drives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sovereign.agent.answer_shape import patched_module
from sovereign.agent.code_mode import extract_code
from sovereign.agent.fix_check import WRONG_LINE_MARK, fix_check, function_to_fix, module_name, named_test_file, stated_call
from sovereign.agent.prompts import prompt
from sovereign.kernel.messages import ChatRequest, Message

__all__ = ["PASS_MARK", "FixGoal", "candidate_request", "candidate_text", "fix_goal", "save_block", "trial_code"]

PASS_MARK = "fix-trial: passes"
"""What a trial prints when the candidate passes the check."""
_MAX_SOURCE = 4000
"""A module longer than this is not shown whole to a candidate request (its function is)."""
_MAX_TEST = 2500


@dataclass(frozen=True, slots=True)
class FixGoal:
    """What a fix of ``file`` must do: the check lines (module already in ``sys.modules``) and how
    the task says it, for the candidate request."""

    file: str
    module: str
    check: str
    """Python lines that raise unless the module in ``sys.modules`` does what the task asks."""
    wanted: str
    """The goal in words (with the test's text when a test file is the check)."""
    saved_check: str
    """The check as the saving block runs it (fresh imports of the written file)."""
    done: str
    """What passing the check shows, for the answer ("average([2, 4, 6]) now returns 4")."""


def fix_goal(task: str, file: str, root: Path) -> FixGoal | None:
    """The goal of fixing ``file`` (a workspace ``.py`` module) for ``task``, or None when the task
    states no check (no call and value, no test file) or the module cannot be imported by name."""
    module = module_name(file) if file.endswith(".py") else None
    saved = fix_check(task, file, root)
    if module is None or saved is None:
        return None
    test = named_test_file(task, root)
    if test is not None:
        check = fix_check(task, file, root, fresh=False)
        assert check is not None
        try:
            text = (root / test).read_text(encoding="utf-8")[:_MAX_TEST]
        except (OSError, UnicodeDecodeError):
            return None
        wanted = f"The tests in {test} must pass:\n```python\n{text.rstrip()}\n```"
        return FixGoal(file, module, check, wanted, saved, f"the tests in {test} pass")
    stated = stated_call(task)
    assert stated is not None
    check = (f"from {module} import {stated.function}\n"
             f"got = {stated.call}\n"
             f"assert got == {stated.expected}, {stated.call + ' returned '!r} + repr(got) + {', not ' + stated.expected!r}")
    return FixGoal(file, module, check, f"{stated.call} must return {stated.expected}.", saved,
                   f"{stated.call} now returns {stated.expected}")


def trial_code(goal: FixGoal, text: str) -> str:
    """Code for the sandbox that runs ``text`` as ``goal``'s module (put in ``sys.modules``, the
    file untouched) and then the check; it prints ``PASS_MARK`` when the check passes."""
    parent, _, leaf = goal.module.rpartition(".")
    top = goal.module.split(".")[0]
    attach = (f"import importlib\nsetattr(importlib.import_module({parent!r}), {leaf!r}, module)\n"
              if parent else "")
    return (
        "import sys, types\n"
        f"for name in [n for n in sys.modules if n.split('.')[0] == {top!r}]:\n"
        "    del sys.modules[name]\n"
        f"module = types.ModuleType({goal.module!r})\n"
        f"module.__file__ = {goal.file!r}\n"
        f"{attach}"
        f"sys.modules[{goal.module!r}] = module\n"
        f"exec(compile({text!r}, {goal.file!r}, 'exec'), module.__dict__)\n"
        f"{goal.check}\n"
        f"print({PASS_MARK!r})\n"
    )


def candidate_request(model: str, task: str, goal: FixGoal, module_text: str, failure: str, *,
                      temperature: float, max_tokens: int) -> ChatRequest:
    """A short, separate request for one candidate fix: the task, the function to fix (the
    module, when no one function is named), how the check fails, and what it must do."""
    found = function_to_fix(task, module_text)
    if found is not None:
        name, _, source = found
        shown = f"The function {name} in {goal.file}:\n```python\n{source.replace(WRONG_LINE_MARK, '')}\n```"
        what = f"the whole corrected function {name}"
    else:
        shown = f"{goal.file}:\n```python\n{module_text[:_MAX_SOURCE].rstrip()}\n```"
        what = "the corrected definitions"
    user = prompt("fix_candidate").format(task=task, shown=shown, wanted=goal.wanted, failure=failure, what=what)
    return ChatRequest(model=model, messages=[Message(role="system", content=prompt("fix_candidate_system")),
                                              Message(role="user", content=user)],
                       max_tokens=max_tokens, temperature=temperature)


def candidate_text(reply: str | None, module_text: str) -> str | None:
    """The module with the definitions a candidate reply wrote put in place of its own, or None
    when the reply holds no code or changes no definition."""
    code = extract_code(reply or "")
    return patched_module([code], module_text) if code else None


def save_block(goal: FixGoal, text: str) -> str:
    """The runtime's turn that saves the fix that passed, runs the task's check again on the
    saved file, and answers with what the check showed (reached only when it passes: a small
    model shown a finished turn tends to send it again rather than answer)."""
    return (f"```python\nwrite_file({goal.file!r}, {text!r})\n{goal.saved_check}\n"
            f"final_answer({f'Fixed {goal.file}: {goal.done}.'!r})\n```")
