"""Cheap checks of a reply before it is accepted as the run's answer (no model call).

- ``call_markup``: the reply carries tool-call syntax (``<tool_call>``, a ``{"name": ...,
  "arguments": ...}`` object, a fenced JSON call) — a small model wrote a call as text.
- ``unread_paths``: the task names workspace files that no tool call touched, so an answer about
  them cannot come from what the agent read.
- ``usage_of``: one line per tool with its argument names, for correction messages.
- ``broken_writes``: files whose latest write left them unparseable (the write tool's warning);
  ``blank_line_writes``: files whose latest write put a stray empty line before what it added.
- ``void_answer`` / ``non_answer``: a value that answers nothing (``None``, ``[]``), or a reply
  that asks for context or says it cannot see the files, from an agent that has the tools to look.
- ``denied_but_seen``: the answer says something is not there ("No ERROR found") while what the
  agent read shows it (a wrong regex or filter in the agent's own code, reported as absence).
- ``ignored_value``: the task names a value that is a whole cell of the data the agent read
  ("... who live in Berlin", and a CSV row has the cell ``Berlin``) but neither its code nor its
  answer uses it (a small model drops the filter and answers for every row).
- ``filtered_block``: that block again with the line that keeps only the items holding the
  value, for the correction to show (a small model told in prose filters half-way).
- ``ordered_dedupe``: the task asks to keep the order, and the code dedupes with ``set()``
  (which loses it): the block with ``dict.fromkeys`` instead, for the correction to show.
- ``answer_expression``: the value a code block gave ``final_answer`` (``total_units``), as code, so
  a correction can show the one line that saves it to the file the task asks for.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sovereign.tools.syntax_check import SYNTAX_WARNING

if TYPE_CHECKING:
    from sovereign.agent.steps import Step
    from sovereign.kernel.messages import ToolSpec

__all__ = ["IgnoredValue", "answer_expression", "blank_line_writes", "broken_writes", "filtered_block", "ordered_dedupe",
           "replay_code", "call_markup", "denied_but_seen", "ignored_value", "mentioned_paths", "named_files",
           "non_answer", "unread_paths", "usage_of", "void_answer", "write_target", "written_paths"]

_VOID = frozenset({"none", "null", "nan", "[]", "{}", "()", "set()", "''", '""'})
_NON_ANSWER = re.compile(
    r"\b(?:as an ai(?: language model)?|i(?:'m| am) not sure what you(?:'re| are) asking"
    r"|(?:could|can) you (?:please )?(?:provide|give|share|clarify)(?: me)? (?:more|the|some|what)"
    r"|i (?:do not|don't|cannot|can't) (?:have )?(?:access|see|read|open)(?: to)? (?:the |your |any )?"
    r"(?:content|contents|files?|workspace|data|documents?))", re.IGNORECASE)


_ABSENCE = re.compile(
    r"\b(?:no|zero)\s+(?:\w+\s+){0,3}?(?:found|match(?:es|ed)?|occurrences?|entr(?:y|ies)|results?|lines?)\b"
    r"|\b(?:not|never) (?:found|present|mentioned|listed|appear(?:s|ed)?|contain(?:s|ed)?)\b"
    r"|\bdoes(?:n't| not) (?:contain|appear|exist|mention|have)\b|\bthere (?:is|are|were|was) no\b"
    r"|\bno\s+(?-i:[A-Z][A-Z_-]{2,})\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{2,}")
_PLAIN_WORDS = frozenset(
    "the and any are was were there this that what which file files line lines log logs found match matches "
    "entry entries result results data text does not have contain contains with from for into none zero".split())


def _file_name_parts(task: str) -> set[str]:
    """The parts of the file names ``task`` mentions ("sales", "csv"), in lower case: words of
    a name, not of the question."""
    return {part.lower() for name in mentioned_paths(task) for part in re.split(r"[/.]", name)}


def denied_but_seen(answer: str, task: str, material: Iterable[str]) -> tuple[str, str] | None:
    """``(term, line)`` when ``answer`` says something is absent ("No ERROR found in the log") and
    a term both the task and the answer name occurs in ``material`` (what the agent's tools read
    and its code printed), with the first line that shows it; else None."""
    if _ABSENCE.search(answer) is None:
        return None
    files = _file_name_parts(task)
    task_words = {w.lower() for w in _WORD.findall(task)}
    terms = [w for w in dict.fromkeys(_WORD.findall(answer))
             if w.lower() in task_words and w.lower() not in _PLAIN_WORDS and w.lower() not in files]
    if not terms:
        return None
    lines = [line for text in material for line in text.splitlines()]
    found = []
    for term in terms:
        pattern = re.compile(rf"(?<![\w-]){re.escape(term)}(?![\w-])", re.IGNORECASE)
        holding = [line for line in lines if pattern.search(line)]
        if holding:
            found.append((len(holding), term, holding[0]))
    if not found:
        return None
    _, term, line = min(found, key=lambda item: item[0])  # the rarest term names what was missed
    return term, line.strip()[:160]


_CELL_SPLIT = re.compile(r"[,;\t|]")
_VALUE_WORD = re.compile(r"(?<![\w.-])(?:[A-Za-z][A-Za-z-]{2,}|[A-Za-z]{1,3}-?\d{1,6})(?![\w-])")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.){0,200})"(\s*:)?')
"""A quoted JSON string, and the colon after it when it is a key (keys name fields, as a CSV
header does: they are not values)."""


def _fields(line: str) -> list[str]:
    """The fields of a delimited line, unquoted (one field for a line without a delimiter)."""
    return [field.strip().strip('"\'') for field in _CELL_SPLIT.split(line)]


def _cells(text: str) -> tuple[set[str], set[str]]:
    """``(cells, headers)`` of ``text`` in lower case: every field of a delimited line and every
    quoted JSON string that is not a key, and the fields of its first line (a CSV header names columns, not values)."""
    cells: set[str] = set()
    lines = text.splitlines()
    for line in lines:
        cells.update(field.lower() for field in _fields(line))
        cells.update(value.lower() for value, key in _QUOTED.findall(line) if not key and len(value) <= 60)
    headers = {field.lower() for field in _fields(lines[0])} if lines else set()
    return cells, headers


@dataclass(frozen=True, slots=True)
class IgnoredValue:
    """A value the task names that the data holds but the agent's code never used."""

    term: str
    line: str
    """A line of the data that holds it (for the correction)."""
    column: str | None
    """The column it is a cell of, when the line is a row under a delimited header, or the key
    it is the value of in a JSON object."""
    cell: str = ""
    """The value as the data writes it (the task may differ in case)."""


def _find(term: str, material: Iterable[str]) -> tuple[str, str | None, str]:
    """The first line of ``material`` holding ``term`` as a whole cell, the name of its column
    when that text has a delimited header line with a field at the same position (or its key in
    a JSON object), and the cell as written."""
    low = term.lower()
    for text in material:
        lines = text.splitlines()
        for line in lines:
            fields = _fields(line)
            lowered = [field.lower() for field in fields]
            if low in lowered:
                header = next((h for h in lines if _CELL_SPLIT.search(h)), "")
                names = _fields(header)
                at = lowered.index(low)
                column = names[at] if len(names) == len(fields) and header != line else None
                return line.strip()[:160], column, fields[at]
    value = re.compile(rf'"([^"\n]{{1,60}})"\s*:\s*"({re.escape(term)})"', re.IGNORECASE)  # "key": "term"
    word = re.compile(rf"(?<![\w-]){re.escape(term)}(?![\w-])", re.IGNORECASE)  # a quoted JSON value
    for text in material:
        for line in text.splitlines():
            if (pair := value.search(line)) is not None:
                return line.strip()[:160], pair.group(1), pair.group(2)
    line = next((line.strip()[:160] for text in material for line in text.splitlines() if word.search(line)), term)
    return line, None, term


def ignored_value(task: str, material: Iterable[str], code: str, answer: str) -> IgnoredValue | None:
    """A word of ``task`` that is a whole cell of ``material`` (what the agent's tools read and
    its code printed) but that neither ``code`` (every block the agent ran, less comment lines,
    lines that only print (a label) and lines that are file text pasted in) nor ``answer`` uses, case-insensitively; else None.
    Column names and file names do not count."""
    material = list(material)
    files = _file_name_parts(task)
    words = [w for w in dict.fromkeys(_VALUE_WORD.findall(task))
             if w.lower() not in _PLAIN_WORDS and w.lower() not in files]
    if not words:
        return None
    cells: set[str] = set()
    headers: set[str] = set()
    data_lines: set[str] = set()
    for text in material:
        found, header = _cells(text)
        cells |= found
        headers |= header
        data_lines.update(line.strip() for line in text.splitlines())
    # file text pasted into the code (a small model's habit) is data and a comment restating the
    # task is prose: neither is a use of the value
    own_code = "\n".join(line for line in code.splitlines()
                         if line.strip() not in data_lines and not line.lstrip().startswith(("#", "print(")))
    used = f"{own_code}\n{answer}".lower()
    for word in words:
        low = word.lower()
        if low in cells and low not in headers and re.search(rf"(?<![\w-]){re.escape(low)}(?![\w-])", used) is None:
            return IgnoredValue(word, *_find(word, material))
    return None


def filtered_block(code: str, ignored: IgnoredValue, material: Iterable[str]) -> str | None:
    """``code`` (the block that ignored the value) with one line added that keeps only the items
    holding ``ignored`` before they are first used, and without its statements that only assign
    pasted file text (the variables already hold the real text); None when ``ignored`` has no
    column or key, or the code never loops over a named collection.

    The line goes right after the statement that assigns the collection the code's first loop
    walks (``rows = list(csv.DictReader(...))``, ``data = json.loads(...)``), else before that
    loop's statement, so every later use (a ``len(rows)`` beside the sum) sees only those items."""
    if not ignored.column:
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    loops = [node for node in ast.walk(tree) if isinstance(node, (ast.For, ast.comprehension))
             and isinstance(node.iter, (ast.Name, ast.Subscript, ast.Attribute))]
    if not loops:
        return None
    first = min(loops, key=lambda node: (node.iter.lineno, node.iter.col_offset))
    collection = ast.get_source_segment(code, first.iter)
    base = first.iter
    while isinstance(base, (ast.Subscript, ast.Attribute)):
        base = base.value
    if collection is None or not isinstance(base, ast.Name):
        return None
    loop_line = first.iter.lineno
    data_lines = {line.strip() for text in material for line in text.splitlines() if line.strip()}
    lines = code.splitlines()
    dropped: set[int] = set()
    after: int | None = None
    before: int | None = None
    for statement in tree.body:
        assert statement.end_lineno is not None
        if statement.end_lineno < loop_line and _is_paste(statement, data_lines):
            dropped.update(range(statement.lineno, statement.end_lineno + 1))
            continue
        if statement.lineno <= loop_line <= statement.end_lineno:
            before = statement.lineno
            break
        if isinstance(statement, ast.Assign) and any(isinstance(t, ast.Name) and t.id == base.id for t in statement.targets):
            after = statement.end_lineno
    if before is None:
        return None
    keep = (f"{collection} = [item for item in {collection} if item[{ignored.column!r}] == {ignored.cell or ignored.term!r}]"
            f"  # only the items with {ignored.cell or ignored.term}")
    at = after + 1 if after is not None else before
    out = [line for number, line in enumerate(lines[:at - 1], 1) if number not in dropped]
    out.append(keep)
    out += [line for number, line in enumerate(lines[at - 1:], at) if number not in dropped]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


def _is_paste(statement: ast.stmt, data_lines: set[str]) -> bool:
    """An assignment of file text the model re-typed (every line of it is a line it read), or of a
    dict of such texts."""
    if not isinstance(statement, ast.Assign):
        return False
    value = statement.value
    texts = value.values if isinstance(value, ast.Dict) and value.values else [value]  # a dict of pasted files too
    return all(isinstance(text, ast.Constant) and isinstance(text.value, str)
               and all(line.strip() in data_lines for line in text.value.splitlines() if line.strip())
               for text in texts)


def _answers(statement: ast.stmt) -> bool:
    """Whether ``statement`` is a ``final_answer(...)`` call on a line of its own."""
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) \
        and isinstance(statement.value.func, ast.Name) and statement.value.func.id == "final_answer"


def replay_code(blocks: Sequence[str], material: Iterable[str]) -> str:
    """Blocks the model ran one after another, as one block to run again: without their
    assignments of pasted file text (the variables hold the real text) and without the
    ``final_answer`` calls of all but the last (which would stop it half-way)."""
    data_lines = {line.strip() for text in material for line in text.splitlines() if line.strip()}
    parts = []
    for number, code in enumerate(blocks, 1):
        try:
            tree = ast.parse(code)
        except SyntaxError:
            parts.append(code)
            continue
        dropped: set[int] = set()
        for statement in tree.body:
            assert statement.end_lineno is not None
            if number < len(blocks) and _answers(statement) or _is_paste(statement, data_lines):
                dropped.update(range(statement.lineno, statement.end_lineno + 1))
        parts.append("\n".join(line for at, line in enumerate(code.splitlines(), 1) if at not in dropped))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).strip("\n")


_KEEP_ORDER = re.compile(r"\b(?:keep|keeping|preserv\w*|maintain\w*|same|original)\b[^.;]{0,30}\border\b"
                         r"|\bin (?:the )?(?:same|original|given) order\b|\bfirst occurrences?\b", re.IGNORECASE)
_SET_CALL = re.compile(r"(?<![\w.])set\((?=\S)")


def ordered_dedupe(task: str, code: str) -> str | None:
    """``code`` with each ``set(...)`` of values made ``dict.fromkeys(...)`` (the same values, in
    the order they first came), when the task asks to keep the order and the code dedupes with
    ``set()`` — which loses it; else None. Code that keeps order itself (a ``seen`` set it adds
    to, ``sorted``) is left alone."""
    if not _KEEP_ORDER.search(task) or _SET_CALL.search(code) is None:
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    if any(isinstance(c.func, ast.Attribute) and c.func.attr == "add" for c in calls) \
            or any(isinstance(c.func, ast.Name) and c.func.id == "sorted" for c in calls) \
            or not any(isinstance(c.func, ast.Name) and c.func.id == "set" and c.args for c in calls):
        return None
    return _SET_CALL.sub("dict.fromkeys(", code)


def answer_expression(code: str) -> str | None:
    """The source of what the last ``final_answer(...)`` of ``code`` answers with, when that is a
    computed value (``total_units``, ``len(lines)``, ``"\\n".join(rows)``) rather than a sentence
    (a string, an f-string, ``"...".format(...)``, text joined with ``+``); None otherwise. A block
    with several ``final_answer(...)`` statements answers with all of their values, a line each."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id == "final_answer" and len(node.args) == 1 and not node.keywords]
    if not calls:
        return None
    top = [node.value for node in tree.body if _answers(node) and node.value in calls]
    if len(top) >= 2:
        # One final_answer per item ("todo.txt: 5", then "poem.txt: 3"): only the first ever
        # runs, so the value is all of them, a line each.
        lines = ", ".join(ast.get_source_segment(code, node.args[0]) or "" for node in top)
        return f'"\\n".join(str(line) for line in [{lines}])'
    value = max(calls, key=lambda node: (node.lineno, node.col_offset)).args[0]
    if _is_sentence(value):
        return None
    return ast.get_source_segment(code, value)


def _is_sentence(node: ast.expr) -> bool:
    """Whether ``node`` builds one line of prose: a string or f-string, a string's ``format``, or
    text joined to one with ``+`` / ``%`` — but not text of several lines (that is the content
    itself, as a file would hold it)."""
    if any(isinstance(part, ast.Constant) and isinstance(part.value, str) and "\n" in part.value
           for part in ast.walk(node)):
        return False
    if isinstance(node, ast.JoinedStr) or isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _is_sentence(node.left) or _is_sentence(node.right)
    return False


def void_answer(text: str) -> bool:
    """Whether ``text`` is a value that answers nothing (what ``final_answer(None)`` gives)."""
    return text.strip().lower() in _VOID


def non_answer(text: str) -> bool:
    """Whether ``text`` asks for context or says it cannot see the files instead of answering."""
    return _NON_ANSWER.search(text) is not None

_MARKUP = (
    (re.compile(r"</?tool_call>|<\|?(?:tool_call|function_call|im_start|im_end)\|?>", re.IGNORECASE),
     "a <tool_call> tag"),
    (re.compile(r"\{\s*\"(?:name|function|tool)\"\s*:\s*\"[^\"]*\"\s*,\s*\"(?:arguments|parameters|args)\"\s*:",
                re.DOTALL), 'a {"name": ..., "arguments": ...} call object'),
    (re.compile(r"\{\s*\"(?:arguments|parameters)\"\s*:.{0,400}?\"name\"\s*:", re.DOTALL),
     'a {"arguments": ..., "name": ...} call object'),
    (re.compile(r"```(?:json|tool_call|tool)\s*\n\s*[\[{]\s*\"(?:name|function|tool)\"", re.IGNORECASE),
     "a fenced JSON call"),
)


def call_markup(text: str | None) -> str | None:
    """What tool-call syntax ``text`` carries (for the correction message), or None."""
    if not text:
        return None
    for pattern, what in _MARKUP:
        if pattern.search(text):
            return what
    return None


# A file name as people write it in a task: "sales.csv", "data/q3.json", "./notes.txt".
_PATH = re.compile(r"(?<![\w/.-])((?:\.{0,2}/)?[\w][\w.-]*(?:/[\w.-]+)*\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/-])")


# A task that asks for a file to be made or changed: an imperative verb opening a sentence or a
# clause ("Fix it.", "In settings.ini, change the port", "... and write just that number to").
_WRITE_VERBS = re.compile(
    r"(?:^|[.!?:;,]\s*|\b(?:and|then|please)\s+)"
    r"(fix|create|write|change|edit|update|modify|append|add|insert|replace|rename|remove|delete|save|sort|correct|"
    r"copy|move|merge|split|reverse|export|store|set|turn|convert|capitali[sz]e|uppercase|lowercase|indent|dedent|"
    r"reformat|trim|strip|prepend|rewrite|reorder|dedupe|deduplicate|truncate|enable|disable|toggle|bump|increase|"
    r"decrease|increment|decrement|swap|uncomment|comment\s+out|put|drop|normali[sz]e|redact|anonymi[sz]e|"
    r"make(?=(?:[^.!?\n]|\.(?=\w))*\b(?:upper|lower|title|capital|bold|italic|sorted|unique|executable|consistent|valid)))\b",
    re.IGNORECASE | re.MULTILINE)


def asks_for_a_write(task: str) -> bool:
    """Whether ``task`` asks for a workspace file to be created or changed."""
    return _WRITE_VERBS.search(task.strip()) is not None and (
        bool(mentioned_paths(task)) or re.search(r"\b(file|files|line|lines)\b", task, re.IGNORECASE) is not None)


_TARGET = re.compile(r"\b(?:fix|change|edit|update|modify|correct|repair)\s+(?:the\s+)?(?:file\s+|(?:code|bugs?|errors?|typos?|problems?)\s+in\s+)?"
                     + _PATH.pattern, re.IGNORECASE)


def write_target(task: str) -> str | None:
    """The file a task says to change ("Fix app/money.py so the test passes"), or None."""
    match = _TARGET.search(task)
    return match.group(1).rstrip(".").removeprefix("./") if match else None


def mentioned_paths(task: str) -> list[str]:
    """File-like names in ``task``, in order, without duplicates (trailing dots dropped)."""
    found: dict[str, None] = {}
    for match in _PATH.finditer(task):
        name = match.group(1).rstrip(".")
        if "." in Path(name).name and not re.fullmatch(r"[\d.]+", name):
            found.setdefault(name.removeprefix("./"), None)
    return list(found)


def in_workspace(workspace: Path, name: str, *, folder: bool = False) -> bool:
    """Whether ``name`` is a file (a folder, with ``folder``) inside ``workspace``, links
    resolved (a name that leads out of it, or to the workspace itself, is not)."""
    root = Path(os.path.realpath(workspace))
    target = Path(os.path.realpath(root / name))
    if target == root or not target.is_relative_to(root):
        return False
    return target.is_dir() if folder else target.is_file()


def named_files(task: str, workspace: Path) -> list[str]:
    """The workspace files ``task`` names, in order: file-like names that exist, and bare words
    that name a file without a suffix at the workspace's top ("the Dockerfile", "the LICENSE"),
    matched ignoring case."""
    found = dict.fromkeys(name for name in mentioned_paths(task) if in_workspace(workspace, name))
    try:
        bare = {entry.name.lower(): entry.name for entry in os.scandir(workspace)
                if "." not in entry.name and entry.is_file()}
    except OSError:
        bare = {}
    if bare:
        for match in _WORD.finditer(task):
            name = bare.get(match.group(0).lower())
            if name is not None and in_workspace(workspace, name):
                found.setdefault(name, None)
    return list(found)


def unread_paths(task: str, workspace: Path | None, touched: Iterable[str]) -> list[str]:
    """Files the task names that exist in ``workspace`` but appear in no tool call's arguments
    (``touched``: the arguments text of every call made so far)."""
    if workspace is None:
        return []
    names = named_files(task, workspace)
    if not names:
        return []
    seen = "\n".join(touched)
    return [n for n in names if n not in seen and Path(n).name not in seen]


_WRITE_RESULT = re.compile(r"^(?:wrote|appended) \d+ bytes to (.+?)(?:; note: line (\d+) is empty[^;]*)?"
                           r"(?:; " + re.escape(SYNTAX_WARNING) + r": (.*))?$", re.DOTALL)


def written_paths(steps: Sequence[Step]) -> list[str]:
    """The files the run's successful writes went to, in order."""
    from sovereign.agent.steps import ToolResultStep

    return [match.group(1) for step in steps
            if isinstance(step, ToolResultStep) and step.name == "write_file" and step.ok
            and (match := _WRITE_RESULT.match(step.content or "")) is not None]


def broken_writes(steps: Sequence[Step]) -> list[tuple[str, str]]:
    """``(file, problem)`` for each file whose latest write left it unparseable."""
    return [(name, match.group(3)) for name, match in _latest_writes(steps).items() if match.group(3)]


def blank_line_writes(steps: Sequence[Step]) -> list[tuple[str, int]]:
    """``(file, line)`` for each file whose latest write left a stray empty line before the
    lines it added (the write tool's note)."""
    return [(name, int(match.group(2))) for name, match in _latest_writes(steps).items() if match.group(2)]


def _latest_writes(steps: Sequence[Step]) -> dict[str, re.Match[str]]:
    """The result of the latest successful write of each file."""
    from sovereign.agent.steps import ToolResultStep

    latest: dict[str, re.Match[str]] = {}
    for step in steps:
        if isinstance(step, ToolResultStep) and step.name == "write_file" and step.ok:
            match = _WRITE_RESULT.match(step.content or "")
            if match is not None:
                latest[match.group(1)] = match
    return latest


def material_read(steps: Sequence[Step]) -> list[str]:
    """What the agent has seen: the text of every tool result and the output of every code run."""
    from sovereign.agent.steps import CodeStep, ToolResultStep

    return [s.content if isinstance(s, ToolResultStep) else s.output
            for s in steps if isinstance(s, ToolResultStep) and s.ok or isinstance(s, CodeStep)]


def touched_arguments(steps: Sequence[Step]) -> list[str]:
    """The arguments of every tool call in ``steps`` (model turns and calls from code)."""
    from sovereign.agent.steps import ModelCallStep, ToolCallStep

    out: list[str] = []
    for step in steps:
        if isinstance(step, ToolCallStep):
            out.append(step.arguments)
        elif isinstance(step, ModelCallStep):
            out.extend(call.arguments for call in step.tool_calls)
    return out


def usage_of(specs: Sequence[ToolSpec]) -> str:
    """``read_file(path, offset?, max_bytes?), calculator(expression)`` for correction messages."""
    parts = []
    for spec in specs:
        properties = spec.parameters.get("properties", {}) if isinstance(spec.parameters, dict) else {}
        required = set(spec.parameters.get("required", [])) if isinstance(spec.parameters, dict) else set()
        names = [p if p in required else f"{p}?" for p in properties]
        parts.append(f"{spec.name}({', '.join(names)})")
    return ", ".join(parts) or "none"
