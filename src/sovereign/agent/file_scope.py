"""An answer about several files computed from one of them.

Asked "In how many of the Python files in src does the word import appear?", with the four files
read into ``contents``, a small model writes ``sum(1 for line in contents['src/a.py'].splitlines()
if "import" in line)``: one file's count where the task asks across all of them.
``one_file_only`` finds a block that answered a question about files (plural) naming exactly one
of the several files the run read, and going through none of the others, so the correction can
name the files left out and the variable that holds them all.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["OneFile", "one_file_only"]

_SEVERAL_FILES = re.compile(r"\b(?:files|each\s+file|every\s+file|all\s+(?:the\s+)?files?)\b", re.IGNORECASE)
_WALKS = frozenset({"items", "values", "keys"})
_LISTINGS = frozenset({"list_files", "glob", "iglob", "rglob", "listdir", "scandir", "walk", "iterdir"})


@dataclass(frozen=True, slots=True)
class OneFile:
    path: str
    """The one file the answering block used."""
    others: tuple[str, ...]
    """The files the run read that the block left out."""
    holder: str | None
    """The variable the block took that file's text from (``contents``), when it indexed one."""


def one_file_only(task: str, code: str, read: Sequence[str]) -> OneFile | None:
    """The file ``code`` (the block that answered) used, when ``task`` asks about several files,
    the run read two or more, and the block names exactly one of them and walks no collection
    (no ``.items()``, no loop over a list of paths); else None."""
    if len(read) < 2 or not _SEVERAL_FILES.search(task):
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    named = {value for value in _used_paths(tree) if value in read}
    if len(named) != 1:
        return None
    assigned = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _WALKS:
            return None
        if isinstance(node, (ast.For, ast.comprehension)) and _walks_files(node.iter, assigned):
            return None
    path = named.pop()
    holder = next((node.value.id for node in ast.walk(tree) if isinstance(node, ast.Subscript)
                   and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant)
                   and node.slice.value == path), None)
    return OneFile(path=path, others=tuple(p for p in read if p != path), holder=holder)


def _walks_files(iterable: ast.expr, assigned: set[str]) -> bool:
    """Whether a loop over ``iterable`` may go through several files: a literal list (of paths),
    a listing call, or a name this block did not bind to one file's text or lines."""
    if isinstance(iterable, (ast.List, ast.Tuple, ast.Set)):
        return True
    if isinstance(iterable, ast.Name):
        return iterable.id not in assigned
    if isinstance(iterable, ast.Call):
        func = iterable.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        return name in _LISTINGS
    return False


def _used_paths(tree: ast.Module) -> set[object]:
    """The constants the block uses as a file: an index (``contents['a.py']``) or a call's first
    argument (``read_file('a.py')``) — not the keys of a dict literal that re-types the files."""
    used: set[object] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            used.add(node.slice.value)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            used.add(node.args[0].value)
    return used
