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
from pathlib import Path, PurePosixPath

from sovereign.agent.answer_check import in_workspace, mentioned_paths

__all__ = ["asks_for_a_fix", "fix_check"]

_FIX = re.compile(r"\b(?:fix|bug|broken|fails?|failing|wrong|repair|correct)\w*\b", re.IGNORECASE)

_EXPECTED = re.compile(r"\b([A-Za-z_]\w*)\(([^()]*)\)\s+should\s+(?:return|be|give|equal)\s+"
                       r"(-?\d+(?:\.\d+)?|'[^']*'|\"[^\"]*\"|True|False|None|\[[^\]]*\])")


def asks_for_a_fix(task: str) -> bool:
    """Whether ``task`` asks for code to be fixed (a bug, a failing test)."""
    return _FIX.search(task) is not None


def _module_name(path: str) -> str | None:
    parts = PurePosixPath(path).with_suffix("").parts
    return ".".join(parts) if parts and all(p.isidentifier() for p in parts) else None


def _test_file(task: str, root: Path) -> str | None:
    for name in mentioned_paths(task):
        stem = PurePosixPath(name).name
        if name.endswith(".py") and (stem.startswith("test_") or stem.endswith("_test.py")) \
                and in_workspace(root, name) and _module_name(name) is not None:
            return name
    return None


def fix_check(task: str, module_file: str, root: Path | None) -> str | None:
    """Python lines that fail unless the fix of ``module_file`` does what ``task`` asks: the
    test functions of the test file it names, else the call and value it states; None when it
    states neither."""
    test = _test_file(task, root) if root is not None else None
    if test is not None:
        return (_fresh_imports(module_file, test) + f"import {_module_name(test)} as checks\n"
                "for name, check in vars(checks).items():\n"
                "    if name.startswith('test') and callable(check) and check.__code__.co_argcount == 0:\n"
                "        check()\n"
                f"print('{test} passes')")
    match = _EXPECTED.search(task)
    module = _module_name(module_file) if module_file.endswith(".py") else None
    if match is None or module is None:
        return None
    function, arguments, expected = match.groups()
    call = f"{function}({arguments})"
    try:
        ast.parse(call, mode="eval")
        ast.literal_eval(expected)
    except (SyntaxError, ValueError):
        return None
    return _fresh_imports(module_file) + f"from {module} import {function}\nassert {call} == {expected}, {call}"


def _fresh_imports(*files: str) -> str:
    """The line that drops the workspace's packages of ``files`` from ``sys.modules``: an earlier
    block's ``import calc`` is run again at the start of each block (notebook state), so without
    it the check would import the module as it was before the write."""
    tops = sorted({PurePosixPath(f).parts[0].removesuffix(".py") for f in files})
    return (f"import sys\nfor name in [n for n in sys.modules if n.split('.')[0] in {set(tops)!r}]:\n"
            "    del sys.modules[name]\n")
