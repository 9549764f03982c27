"""The lines that check a code fix against what the task says it must do.

A correction that shows a small model the block saving its fix also runs the check the task
implies, so a wrong fix fails where the model sees it instead of being reported as done: the test
file the task names ("the test in tests/test_money.py fails"), or the call and value it states
("add(2, 3) should return 5"). The check first drops the module from ``sys.modules``: a block
runs in a fresh process, but an earlier block's imports are run again at its start.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sovereign.agent.answer_check import in_workspace, mentioned_paths

__all__ = ["WRONG_LINE_MARK", "StatedCall", "asks_for_a_fix", "fix_check", "function_to_fix", "module_name", "stated_call",
           "named_test_file"]

_FIX = re.compile(r"\b(?:fix|bug|broken|fails?|failing|wrong|repair|correct)\w*\b", re.IGNORECASE)

_EXPECTED = re.compile(r"\b([A-Za-z_]\w*)\(([^()]*)\)\s+(?:(?:in|from|of)\s+[\w./-]+\s+)?"
                       r"(?:(?:returns?|gives?)\s+[^,;]+?,?\s+(?:but|while|whereas)\s+(?:it\s+)?)?"
                       r"should\s+(?:return|be|give|equal)\s+"
                       r"(-?\d+(?:\.\d+)?|'[^']*'|\"[^\"]*\"|True|False|None|\[[^\]]*\])")


WRONG_LINE_MARK = "  # the wrong line: change it"
"""The comment ``function_to_fix`` puts on the line to change (never part of a saved file)."""

_NAME = re.compile(r"\b[A-Za-z_]\w*\b")


def asks_for_a_fix(task: str) -> bool:
    """Whether ``task`` asks for code to be fixed (a bug, a failing test)."""
    return _FIX.search(task) is not None


def module_name(path: str) -> str | None:
    parts = PurePosixPath(path).with_suffix("").parts
    return ".".join(parts) if parts and all(p.isidentifier() for p in parts) else None


def named_test_file(task: str, root: Path) -> str | None:
    for name in mentioned_paths(task):
        stem = PurePosixPath(name).name
        if name.endswith(".py") and (stem.startswith("test_") or stem.endswith("_test.py")) \
                and in_workspace(root, name) and module_name(name) is not None:
            return name
    return None


@dataclass(frozen=True, slots=True)
class StatedCall:
    """A call and the value the task says it should give ("add(2, 3) should return 5")."""

    function: str
    call: str
    expected: str


def stated_call(task: str) -> StatedCall | None:
    """The call and value ``task`` states, when both are valid Python; else None."""
    match = _EXPECTED.search(task)
    if match is None:
        return None
    function, arguments, expected = match.groups()
    call = f"{function}({arguments})"
    try:
        ast.parse(call, mode="eval")
        ast.literal_eval(expected)
    except (SyntaxError, ValueError):
        return None
    return StatedCall(function, call, expected)


def function_to_fix(task: str, module_text: str) -> tuple[str, StatedCall | None, str] | None:
    """The top-level function of ``module_text`` the task is about — the one its stated call
    ("add(2, 3) should return 5") calls, else the first it names ("largest(xs) in util.py"),
    else the module's only function — with that call and the function's source; a body of one
    line is marked as the line to change. None when the task names no function the module
    defines."""
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        return None
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    stated = stated_call(task)
    if stated is not None and stated.function in functions:
        name = stated.function
    else:
        stated = None
        name = next((word for word in _NAME.findall(task) if word in functions), None)
        if name is None and len(functions) == 1:  # "fix app/money.py so the test passes"
            name = next(iter(functions))
    if name is None:
        return None
    node = functions[name]
    source = ast.get_source_segment(module_text, node)
    if source is None:
        return None
    lines = source.splitlines()
    if len(node.body) == 1 and node.body[0].lineno == node.body[0].end_lineno:
        lines[node.body[0].lineno - node.lineno] += WRONG_LINE_MARK
    return name, stated, "\n".join(lines)


def fix_check(task: str, module_file: str, root: Path | None, *, fresh: bool = True) -> str | None:
    """Python lines that fail unless the fix of ``module_file`` does what ``task`` asks: the
    test functions of the test file it names, else the call and value it states (the assertion
    says what the call returned); None when it states neither. ``fresh=False`` leaves out the line
    that drops the workspace's modules from ``sys.modules`` (for a caller that put the module
    there itself)."""
    test = named_test_file(task, root) if root is not None else None
    if test is not None:
        return ((_fresh_imports(module_file, test) if fresh else "") + f"import {module_name(test)} as checks\n"
                "for name, check in vars(checks).items():\n"
                "    if name.startswith('test') and callable(check) and check.__code__.co_argcount == 0:\n"
                "        check()\n"
                f"print('{test} passes')")
    stated = stated_call(task)
    module = module_name(module_file) if module_file.endswith(".py") else None
    if stated is None or module is None:
        return None
    return ((_fresh_imports(module_file) if fresh else "") + f"from {module} import {stated.function}\n"
            f"assert {stated.call} == {stated.expected}, {stated.call}")


def _fresh_imports(*files: str) -> str:
    """The line that drops the workspace's packages of ``files`` from ``sys.modules``: an earlier
    block's ``import calc`` is run again at the start of each block (notebook state), so without
    it the check would import the module as it was before the write."""
    tops = sorted({PurePosixPath(f).parts[0].removesuffix(".py") for f in files})
    return (f"import sys\nfor name in [n for n in sys.modules if n.split('.')[0] in {set(tops)!r}]:\n"
            "    del sys.modules[name]\n")
