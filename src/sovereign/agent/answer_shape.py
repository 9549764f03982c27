"""Checks on the shape of an answer that answer_check's value checks do not cover: a task that
asks "which of A and B" answered without naming either (a small model answers "500" to "which of
q1.csv and q2.csv has the larger total, and by how much?"), an answer without the kind of value
the task asks for (an email address, a count, the number of a "by how much"), and a block that built a file's new text in a
variable but never saved it (the edited copy of todo.txt, then "added pay rent"), and the
replacement a "change X from A to B" task asks for, and the module a block fixed in its own code
(it defined the fixed ``add`` but never saved it to calc.py), a file named as the one that
defines a function when it only uses it, and a number retyped wrong in prose after the code
computed it."""

from __future__ import annotations

import ast
import re

__all__ = ["edited_text_variable", "listed_items", "missing_kind", "patched_module", "replacement", "retyped_value",
           "swap_line", "undefined_in_named_file", "unnamed_choice"]

_WHICH_OF = re.compile(r"\bwhich\s+of\s+(?:the\s+)?(.+?)\s+(?:has|have|is|are|was|were|does|do|did|contains?|holds?|"
                       r"gives?|costs?|sells?|shows?|comes?|got|earns?|had)\b", re.IGNORECASE)
_SPLIT = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", re.IGNORECASE)


_WHICH_TAIL = re.compile(r"\bwhich\b[^?,:;]*[,:]\s*((?:[^?,]+,\s*)*[^?,]+?\s+or\s+[^?,]+?)\s*\?", re.IGNORECASE)
"""Options listed at the end of a "which" question: "Which has more lines, a.log or b.log?"."""


def _options(task: str) -> list[str]:
    """The options a "which of A, B and C ..." or "which ..., A or B?" task names, or [] when it
    names no such list."""
    match = _WHICH_OF.search(task) or _WHICH_TAIL.search(task)
    if match is None:
        return []
    options = [part.strip(" '\"`") for part in _SPLIT.split(match.group(1))]
    options = [part for part in options if part and len(part.split()) <= 3]
    return options if len(options) >= 2 else []


def _mentions(answer: str, option: str) -> bool:
    """Whether ``answer`` names ``option``: as it is, without its extension, or with its
    underscores and hyphens written as spaces ("Class B" for class_b.csv)."""
    lowered = answer.lower()
    stem = option.rsplit(".", 1)[0] if "." in option else option
    spaced = re.sub(r"[_-]+", " ", stem)
    return any(re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", lowered) for name in {option, stem, spaced}
               if name)


def unnamed_choice(task: str, answer: str) -> list[str]:
    """The options of a "which of A and B" task when ``answer`` names none of them, else []."""
    options = _options(task)
    if not options or any(_mentions(answer, option) for option in options):
        return []
    return options


def edited_text_variable(code: str, original: str, *, ignore: tuple[str, ...] = ()) -> str | None:
    """The variable the last block assigned a text of several lines to (a string literal, the
    file's text as the model means it to be) when that text differs from ``original``, the file's
    current text; None when it assigned none or only copied the file unchanged — or copied a
    notice's example block (holding one of ``ignore``) with nothing changed but its check."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for statement in reversed(tree.body):
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str) and "\n" in statement.value.value.strip()):
            text = statement.value.value
            if any(copied in text for copied in ignore):  # a notice's example block, copied: its check is no edit
                for copied in ignore:
                    text = text.replace(copied, "")
                text = "\n".join(line.rstrip() for line in text.splitlines() if not line.lstrip().startswith("assert "))
            if text.strip() == original.strip() or _same_lines(text, original):
                return None
            return statement.targets[0].id
    return None


def _same_lines(text: str, original: str) -> bool:
    """Whether two texts hold the same lines once trailing spaces are ignored."""
    return [line.rstrip() for line in text.strip().splitlines()] == [line.rstrip() for line in original.strip().splitlines()]


_KINDS = (
    # (what the task asks for, the pattern of its question, the pattern an answer must hold,
    #  whether that pattern also finds the value in the files read)
    ("an email address", re.compile(r"\be-?mail(?:\s+address)?\b", re.IGNORECASE),
     re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), True),
    ("a phone number", re.compile(r"\b(?:tele)?phone(?:\s+number)?\b", re.IGNORECASE),
     re.compile(r"\+?\d[\d ().-]{5,}\d"), True),
    ("a time of day", re.compile(r"\b(?:what|which)\s+time\b", re.IGNORECASE),
     re.compile(r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s*[ap]\.?m\b|\bnoon\b|\bmidnight\b", re.IGNORECASE), True),
    ("a date", re.compile(r"\b(?:what|which)\s+date\b", re.IGNORECASE),
     re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|"
                r"oct|nov|dec)[a-z]*\.?\s+\d{1,2}\b|\b\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
                re.IGNORECASE), True),
    ("a number (how many)", re.compile(r"^\s*how many\b", re.IGNORECASE),
     re.compile(r"(?<![A-Za-z_])\d|\b(?:no|none|zero|one|two|three|four|five|six|seven|eight|nine|ten)\b", re.IGNORECASE), False),
    ("a number (how much)", re.compile(r"\bhow much\b|\bwhat is the difference\b", re.IGNORECASE),
     re.compile(r"(?<![A-Za-z_])\d|\b(?:none|nothing|zero|same|equal)\b", re.IGNORECASE), False),
)


_FILE_NAME = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,5}\b")
_ABSENT = re.compile(r"\b(?:no|not|none|nothing)\b", re.IGNORECASE)
"""An answer saying the value is not there: one to search for cannot be asked for again."""


def missing_kind(task: str, answer: str) -> tuple[str, str | None] | None:
    """``(kind, finder)`` when the task asks for a kind of value ("an email address", "a
    number") that ``answer`` holds none of: what it is, and the regex that finds one in a text
    (None for a count, which is computed, not found)."""
    question_text = _FILE_NAME.sub(" ", task)  # "email.txt" names a file, not the kind asked for
    absent = _ABSENT.search(answer) is not None
    for kind, question, value, findable in _KINDS:
        if question.search(question_text) and not value.search(answer) and not (findable and absent):
            return kind, value.pattern if findable else None
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


_STOP_WORDS = frozenset("the and for from with into that this change set replace every all each file line value".split())


def swap_line(task: str, text: str, old: str) -> int | None:
    """For a "change ... from A to B" task whose ``old`` text occurs more than once in ``text``:
    the index of the one line to change — the only line holding ``old`` as a whole token that
    also holds a word of the task ("replicas" in "Change the replicas from 2 to 3"); None when no
    one line is that line (or ``old`` occurs once: replacing it everywhere is the change)."""
    if text.count(old) <= 1:
        return None
    token = re.compile(rf"(?<![\w.]){re.escape(old)}(?![\w.])")
    holding = [i for i, line in enumerate(text.splitlines()) if token.search(line)]
    if len(holding) == 1:
        return holding[0]
    words = {w.lower() for w in re.findall(r"[A-Za-z_]{3,}", task)} - _STOP_WORDS
    named = [i for i in holding if words & {w.lower() for w in re.findall(r"[A-Za-z_]{3,}", text.splitlines()[i])}]
    return named[0] if len(named) == 1 else None


def _top_definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def patched_module(blocks: list[str], original: str) -> str | None:
    """``original`` (a Python module's text) with each function or class the code ``blocks``
    defined again differently (the latest definition) put in place of its own; None when the
    blocks changed none of its definitions."""
    try:
        module = ast.parse(original)
    except SyntaxError:
        return None
    defined = _top_definitions(module)
    latest: dict[str, str] = {}
    for code in blocks:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for name, node in _top_definitions(tree).items():
            source = ast.get_source_segment(code, node)
            if name in defined and source and ast.dump(node) != ast.dump(defined[name]):
                latest[name] = source
            elif name in defined:
                latest.pop(name, None)  # defined again as it is in the file
    if not latest:
        return None
    lines = original.splitlines(keepends=True)
    for name in sorted(latest, key=lambda n: defined[n].lineno, reverse=True):
        node = defined[name]
        lines[node.lineno - 1:node.end_lineno] = [latest[name].rstrip("\n") + "\n"]
    return "".join(lines)


_DEFINES = re.compile(r"\b(?:defines?|declares?|implements?)\s+(?:the\s+)?(?:function|class|method|constant)?\s*"
                      r"`?([A-Za-z_]\w*)`?", re.IGNORECASE)
_NOT_A_NAME = frozenset({"the", "a", "an", "function", "class", "method", "constant", "it", "this", "that"})


def undefined_in_named_file(task: str, answer: str, files: dict[str, str]) -> tuple[str, str] | None:
    """``(file, name)`` when ``task`` asks which file defines ``name`` and every file read
    (``files``: path → text) that ``answer`` names lacks a definition of it (``def name``, ``class
    name``, ``name =`` at the start of a line) — a small model names the first file that merely
    uses it; else None."""
    match = _DEFINES.search(task)
    if match is None or match.group(1).lower() in _NOT_A_NAME:
        return None
    name = match.group(1)
    definition = re.compile(rf"^\s*(?:(?:async\s+)?def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*[:=]", re.MULTILINE)
    named = [path for path in files if re.search(rf"(?<![\w/.-]){re.escape(path)}(?![\w/-])", answer)
             or re.search(rf"(?<![\w/.-]){re.escape(path.rsplit('/', 1)[-1])}(?![\w/-])", answer)]
    if not named or any(definition.search(files[path]) for path in named):
        return None
    return named[0], name


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")


def retyped_value(answer: str, computed: str) -> tuple[str, str] | None:
    """``(fixed, wrong)``: ``answer`` (prose the model wrote after its code answered
    ``computed``, a number) with its one number put right, and that number — when it states
    exactly one number and that is not ``computed`` (a model restating "500" as "by 400");
    else None."""
    try:
        value = float(computed)
    except ValueError:
        return None
    numbers = list(_NUMBER.finditer(answer))
    if len(numbers) != 1 or abs(float(numbers[0].group(0)) - value) <= 1e-9 * max(1.0, abs(value)):
        return None
    found = numbers[0]
    return answer[:found.start()] + computed + answer[found.end():], found.group(0)


_ITEM = r"[\w#.@+-]+"
_LISTED = re.compile(rf"\b(?:items?|with|containing|lines?|words?|names?|values?)\s+(?:the\s+)?"
                     rf"({_ITEM}(?:\s*,\s*{_ITEM})+,?\s+and\s+{_ITEM})", re.IGNORECASE)
_NOT_ITEMS = frozenset("the a an one per line lines each row rows file files".split())


def listed_items(task: str) -> list[str]:
    """The items a task lists for a file's content ("with the items eggs, flour and sugar"):
    ``['eggs', 'flour', 'sugar']``; [] when it lists none."""
    items: list[str] = []
    for match in _LISTED.finditer(task):
        for part in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", match.group(1)):
            part = part.strip().strip(".")
            if part and part.lower() not in _NOT_ITEMS:
                items.append(part)
    return items
