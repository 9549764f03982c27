"""A row picked by its position when the task names the value that identifies it.

Asked "Which department does Olivia work in?", a small model writes
``contents["employees.csv"].splitlines()[1].split(",")[2]``: line 1 is Noah's row, and the answer
names Olivia beside Noah's department. ``positional_pick`` finds a constant index into the lines
(or the parsed rows) of a delimited text the run read when the value the task names sits on
another line, and rewrites the block to pick the row holding that value instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["RowPick", "positional_pick"]

_WORD = re.compile(r"[A-Za-z0-9][\w.@-]*")
_DELIMITED = re.compile(r"[,;\t|]")


@dataclass(frozen=True, slots=True)
class RowPick:
    term: str
    picked: str
    """The line the code's index picks."""
    line: str
    """The line that holds the value the task names."""
    block: str


def _row_of(term: str, material: Iterable[str]) -> tuple[list[str], int] | None:
    """The lines of the delimited text holding ``term`` as a whole field below its header, and
    the index of that line."""
    for text in material:
        lines = text.strip("\n").splitlines()
        if len(lines) < 2 or not _DELIMITED.search(lines[0]):
            continue
        for at, line in enumerate(lines[1:], 1):
            if term in (field.strip().strip("\"'") for field in _DELIMITED.split(line)):
                return lines, at
    return None


def _origin(tree: ast.Module, name: str) -> str | None:
    """How the list named ``name`` was made: "lines" (splitlines), "dicts" (csv.DictReader),
    "rows" (csv.reader); None when unknown."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _kind(node.value, tree)
    return None


def _kind(node: ast.expr, tree: ast.Module) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "splitlines":
            return "lines"
        if isinstance(func, ast.Attribute) and func.attr in ("DictReader", "reader"):
            return "dicts" if func.attr == "DictReader" else "rows"
        if isinstance(func, ast.Name) and func.id == "list" and node.args:
            return _kind(node.args[0], tree)
    if isinstance(node, ast.Name):
        return _origin(tree, node.id)
    return None


def positional_pick(task: str, code: str, material: Iterable[str]) -> RowPick | None:
    """A constant index ``code`` takes into the lines or rows of a delimited text when a value
    ``task`` names is a field of another line of it; with ``code`` rewritten to pick the row
    holding that value. None when there is no such index."""
    material = list(material)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    found: list[tuple[str, list[str], int]] = []
    for word in dict.fromkeys(_WORD.findall(task)):
        if len(word) < 3 or not any(c.isalpha() for c in word):
            continue
        row = _row_of(word, material)
        if row is not None:
            found.append((word, *row))
    if not found:
        return None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                and type(node.slice.value) is int and node.slice.value >= 0):
            continue
        kind = _kind(node.value, tree)
        if kind is None:
            continue
        line_at = node.slice.value + (1 if kind == "dicts" else 0)
        for term, lines, at in found:
            if line_at in (0, at) or line_at >= len(lines):  # line 0 is the header
                continue
            if kind == "lines":
                test = f"{term!r} in [field.strip() for field in item.split({_DELIMITED.search(lines[0]).group(0)!r})]"
            elif kind == "dicts":
                test = f"{term!r} in item.values()"
            else:
                test = f"{term!r} in item"
            pick = ast.parse(f"next(item for item in SEQUENCE if {test})", mode="eval").body
            pick.args[0].generators[0].iter = node.value  # type: ignore[attr-defined]
            _Swap(node, pick).visit(tree)
            return RowPick(term=term, picked=lines[line_at], line=lines[at],
                           block=ast.unparse(ast.fix_missing_locations(tree)))
    return None


class _Swap(ast.NodeTransformer):
    def __init__(self, old: ast.AST, new: ast.expr) -> None:
        self.old, self.new = old, new

    def visit(self, node: ast.AST) -> ast.AST:
        return self.new if node is self.old else super().visit(node)
