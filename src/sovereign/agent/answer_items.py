"""An aggregate computed from the first element of lists that hold several, an answer given from
inside a loop (``final_answer`` ends the run, so the loop stopped at its first turn), and a count
of a file's list items that took in lines that are not items (a comment after a numbered list).

Asked for "the total value of order A1, summed over its items", a small model writes
``order["items"][0]["qty"] * order["items"][0]["price"]``: a fixed index into a list that, in the
data it read, holds more than one element. ``first_item_only`` finds such an index in the block
that answered and rewrites the block to walk every element (``for item in order["items"]``), so
the correction can show code to run rather than describe the mistake.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FirstOnly", "ListCount", "final_in_loop", "first_item_only", "list_count", "list_lengths"]

_AGGREGATE = re.compile(r"\b(?:sum|summed|summing|total|totals|all|each|every|over its|combined|altogether)\b",
                        re.IGNORECASE)
_COMPREHENSIONS = (ast.GeneratorExp, ast.ListComp, ast.SetComp)


@dataclass(frozen=True, slots=True)
class FirstOnly:
    """A fixed index into a list the task's aggregate should walk."""

    expression: str
    """The indexing as the code wrote it (``order["items"][0]``)."""
    key: str
    """The key of the lists it indexes (``items``)."""
    longest: int
    """The most elements a list under that key holds in the data read."""
    block: str | None
    """The answering block rewritten to walk every element, when it could be."""


def list_lengths(material: Iterable[str]) -> dict[str, int]:
    """For each key under which the JSON texts of ``material`` hold a list: its longest length."""
    lengths: dict[str, int] = {}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, list):
                    lengths[key] = max(lengths.get(key, 0), len(item))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for text in material:
        stripped = text.strip()
        if not stripped.startswith(("{", "[")):
            continue
        try:
            walk(json.loads(stripped))
        except ValueError:
            continue
    return lengths


def _fixed_index(node: ast.AST, lengths: dict[str, int]) -> tuple[ast.Subscript, str] | None:
    """``node`` when it is ``X["key"][n]`` with ``n`` a constant and some list under ``key``
    longer than one element, with that key."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
            and type(node.slice.value) is int and node.slice.value >= 0):
        return None
    inner = node.value
    if not (isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Constant)
            and isinstance(inner.slice.value, str)):
        return None
    key = inner.slice.value
    return (node, key) if lengths.get(key, 0) > 1 else None


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _bound_names(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


class _Replace(ast.NodeTransformer):
    """Every constant index into the list (``listing`` is its dump: ``items[0]``, ``items[1]``)
    becomes the loop variable."""

    def __init__(self, listing: str, name: str) -> None:
        self.listing, self.name = listing, name

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.slice, ast.Constant) and type(node.slice.value) is int \
                and ast.dump(node.value) == self.listing:
            return ast.Name(id=self.name, ctx=ast.Load())
        return self.generic_visit(node)


def _element_name(key: str, taken: set[str]) -> str:
    name = key[:-1] if key.endswith("s") and len(key) > 2 and key[:-1].isidentifier() else "element"
    while name in taken:
        name += "_"
    return name


def _rewrite(tree: ast.Module, found: ast.Subscript) -> bool:
    """Make the comprehension or ``for`` loop that uses ``found`` walk every element of the list
    it indexes, or, outside any loop, sum the value that uses it over the elements; False when
    neither fits."""
    listing = found.value
    pattern = ast.dump(listing)
    root = _root_name(listing)
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    name = _element_name(found.value.slice.value, taken)  # type: ignore[union-attr]
    for node in ast.walk(tree):
        if isinstance(node, _COMPREHENSIONS):
            at = next((i for i, g in enumerate(node.generators) if root in _bound_names(g.target)), None)
            if at is None or pattern not in ast.dump(node.elt):
                continue
            replace = _Replace(pattern, name)
            node.elt = replace.visit(node.elt)
            node.generators.insert(at + 1, ast.comprehension(
                target=ast.Name(id=name, ctx=ast.Store()), iter=listing, ifs=[], is_async=0))
            return True
        if isinstance(node, ast.For) and root in _bound_names(node.target):
            using = [s for s in node.body if pattern in ast.dump(s)]
            if not using:
                continue
            first, last = node.body.index(using[0]), node.body.index(using[-1])
            replace = _Replace(pattern, name)
            inner = [replace.visit(s) for s in node.body[first:last + 1]]
            node.body[first:last + 1] = [ast.For(target=ast.Name(id=name, ctx=ast.Store()), iter=listing,
                                                 body=inner, orelse=[], lineno=0)]
            return True
    for statement in tree.body:  # no loop: the value that indexes becomes a sum over the elements
        holder: ast.AST | None = statement if isinstance(statement, (ast.Assign, ast.AugAssign)) else None
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) and len(statement.value.args) == 1:
            holder = statement.value
        if holder is None:
            continue
        value = holder.args[0] if isinstance(holder, ast.Call) else holder.value  # type: ignore[attr-defined]
        if pattern not in ast.dump(value):
            continue
        summed = ast.Call(func=ast.Name(id="sum", ctx=ast.Load()), keywords=[], args=[ast.GeneratorExp(
            elt=_Replace(pattern, name).visit(value),
            generators=[ast.comprehension(target=ast.Name(id=name, ctx=ast.Store()), iter=listing, ifs=[], is_async=0)])])
        if isinstance(holder, ast.Call):
            holder.args[0] = summed
        else:
            holder.value = summed  # type: ignore[attr-defined]
        return True
    return False


def first_item_only(task: str, code: str, material: Iterable[str]) -> FirstOnly | None:
    """The fixed index ``code`` (the block that answered) takes into a list of several elements,
    when ``task`` asks for an aggregate (a total, a sum, each or every); else None."""
    if not _AGGREGATE.search(task):
        return None
    lengths = list_lengths(material)
    if not lengths:
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    hit = next((h for h in (_fixed_index(node, lengths) for node in ast.walk(tree)) if h is not None), None)
    if hit is None:
        return None
    found, key = hit
    expression = ast.get_source_segment(code, found) or ast.unparse(found)
    block = ast.unparse(ast.fix_missing_locations(tree)) if _rewrite(tree, found) else None
    return FirstOnly(expression=expression, key=key, longest=lengths[key], block=block)


def final_in_loop(code: str) -> bool:
    """Whether ``code`` calls ``final_answer`` inside the body of a ``for`` or ``while`` loop
    (outside any function it defines): the run ends at the loop's first turn."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False

    def inside(node: ast.AST, looping: bool) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return False
        if looping and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "final_answer":
            return True
        if isinstance(node, (ast.For, ast.While)):
            return any(inside(child, True) for child in node.body)
        return any(inside(child, looping) for child in ast.iter_child_nodes(node))

    return inside(tree, False)


_COUNTED = re.compile(r"\bhow\s+many\s+(?:\w+\s+)?(steps|items|bullets?|bullet\s+points|points|entries|tasks|todos|"
                      r"ingredients|options|requirements|features|rules|things|instructions)\b", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S")


@dataclass(frozen=True, slots=True)
class ListCount:
    path: str
    items: list[str]
    """The list's item lines."""


def list_count(task: str, answer: str, files: Iterable[tuple[str, str]]) -> ListCount | None:
    """The file and its list items when ``task`` asks how many steps (items, bullet points, ...)
    and ``answer``'s number differs from the number of item lines (``- x``, ``1. x``) of the one
    file read that has a list; else None."""
    if _COUNTED.search(task) is None:
        return None
    match = re.search(r"(?<![\w.])\d+(?![\w.])", answer)
    listed = [(path, [line.strip() for line in text.splitlines() if _LIST_ITEM.match(line)]) for path, text in files]
    listed = [(path, items) for path, items in dict(listed).items() if len(items) >= 2]
    if match is None or len(listed) != 1 or int(match.group(0)) == len(listed[0][1]):
        return None
    return ListCount(path=listed[0][0], items=listed[0][1])
