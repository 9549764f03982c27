"""Checks on the shape of an answer that answer_check's value checks do not cover: a task that
asks "which of A and B" answered without naming either (a small model answers "500" to "which of
q1.csv and q2.csv has the larger total, and by how much?"), an answer without the kind of value
the task asks for (an email address, a count), and a block that built a file's new text in a
variable but never saved it (the edited copy of todo.txt, then "added pay rent"), and the
replacement a "change X from A to B" task asks for."""

from __future__ import annotations

import ast
import re

__all__ = ["edited_text_variable", "missing_kind", "replacement", "unnamed_choice"]

_WHICH_OF = re.compile(r"\bwhich\s+of\s+(?:the\s+)?(.+?)\s+(?:has|have|is|are|was|were|does|do|did|contains?|holds?|"
                       r"gives?|costs?|sells?|shows?|comes?|got|earns?|had)\b", re.IGNORECASE)
_SPLIT = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", re.IGNORECASE)


def _options(task: str) -> list[str]:
    """The options a "which of A, B and C ..." task names, or [] when it names no such list."""
    match = _WHICH_OF.search(task)
    if match is None:
        return []
    options = [part.strip(" '\"`") for part in _SPLIT.split(match.group(1))]
    options = [part for part in options if part and len(part.split()) <= 3]
    return options if len(options) >= 2 else []


def _mentions(answer: str, option: str) -> bool:
    lowered = answer.lower()
    stem = option.rsplit(".", 1)[0] if "." in option else option
    return any(re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", lowered) for name in {option, stem} if name)


def unnamed_choice(task: str, answer: str) -> list[str]:
    """The options of a "which of A and B" task when ``answer`` names none of them, else []."""
    options = _options(task)
    if not options or any(_mentions(answer, option) for option in options):
        return []
    return options


def edited_text_variable(code: str, original: str) -> str | None:
    """The variable the last block assigned a text of several lines to (a string literal, the
    file's text as the model means it to be) when that text differs from ``original``, the file's
    current text; None when it assigned none or only copied the file unchanged."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for statement in reversed(tree.body):
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str) and "\n" in statement.value.value.strip()):
            if statement.value.value.strip() == original.strip():
                return None
            return statement.targets[0].id
    return None


_KINDS = (
    # (what the task asks for, the pattern of its question, the pattern an answer must hold)
    ("an email address", re.compile(r"\be-?mail(?:\s+address)?\b", re.IGNORECASE),
     re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("a number (how many)", re.compile(r"^\s*how many\b", re.IGNORECASE),
     re.compile(r"\d|\b(?:no|none|zero|one|two|three|four|five|six|seven|eight|nine|ten)\b", re.IGNORECASE)),
)


def missing_kind(task: str, answer: str) -> str | None:
    """What the task asks for ("an email address", "a number") when ``answer`` holds none."""
    for kind, question, value in _KINDS:
        if question.search(task) and not value.search(answer):
            return kind
    return None


_TOKEN = r"""(?:"([^"\n]+)"|'([^'\n]+)'|([^\s"',;]+?))"""
_REPLACEMENTS = (
    re.compile(rf"\bfrom\s+{_TOKEN}\s+to\s+{_TOKEN}(?=[\s.,;!?]|$)", re.IGNORECASE),
    re.compile(rf"\breplace\s+(?:every\s+|all\s+|each\s+)?{_TOKEN}\s+(?:with|by)\s+{_TOKEN}(?=[\s.,;!?]|$)",
               re.IGNORECASE),
)


def replacement(task: str) -> tuple[str, str] | None:
    """``(old, new)`` when the task says to change something "from A to B" or to "replace A with
    B" (quoted or single words), else None."""
    for pattern in _REPLACEMENTS:
        match = pattern.search(task)
        if match is not None:
            groups = match.groups()
            old = next(g for g in groups[:3] if g is not None)
            new = next(g for g in groups[3:] if g is not None)
            return (old, new) if old != new else None
    return None
