"""Whether the values an answer states were computed or read, or guessed.

A small model asked "What is 17 times 23?" answers "531" without running anything, and asked
"What date is 90 days after 2024-01-31?" answers "2024-03-11": arithmetic and calendars done in
its head. ``ungrounded_value`` finds the first number, date or weekday an answer states that
neither the task nor anything the run saw (tool results, code output, the answers its code
computed) holds: the agent then asks for it to be computed. A number counts as seen when it is
a value the run saw, that value rounded to the answer's decimals, or that value as a percentage.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

__all__ = ["asks_for_a_line", "computed_final", "how_to_compute", "line_out_of_range", "negative_count",
           "ungrounded_value"]

_DATE = re.compile(r"(?<![\w-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w-])")
_TIME = re.compile(r"(?<![\w:])\d{1,2}:\d{2}(?::\d{2})?(?![\w:])")
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)*(?![\w])")
_ANY_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_LIST_MARKER = re.compile(r"(?m)^\s*\d+[.)]\s")
_HOW_MANY = re.compile(r"\bhow\s+(?:many|long|far)\b|\bdifference\s+between\b", re.IGNORECASE)
_NEGATIVE = re.compile(r"^\s*(-\d+(?:\.\d+)?)(\s*[A-Za-z ]{0,20})$")
_WEEKDAY = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.IGNORECASE)


def _values(text: str) -> tuple[set[str], list[float]]:
    """The dates (as YYYY-MM-DD), times, version strings and weekday names (lower case) in
    ``text``, and every number in it (parts of dates, times and versions included, so "30
    April" is seen in "2024-04-30")."""
    strings = {_iso(match) for match in _DATE.finditer(text)} | {m.group(0) for m in _TIME.finditer(text)}
    strings |= {m.group(0) for m in _NUMBER.finditer(text) if m.group(0).count(".") > 1}
    strings |= {m.group(1).lower() for m in _WEEKDAY.finditer(text)}
    return strings, [float(m.group(0)) for m in _ANY_DIGITS.finditer(text.replace(",", ""))]


def _iso(date: re.Match[str]) -> str:
    year, month, day = (int(part) for part in date.groups())
    return f"{year:04d}-{month:02d}-{day:02d}"


def _decimals(token: str) -> int:
    return len(token.split(".", 1)[1]) if "." in token else 0


def _number_seen(token: str, seen: list[float]) -> bool:
    value = abs(float(token.replace(",", "")))
    places = _decimals(token)
    for number in seen:
        for candidate in (number, number * 100, number / 100):
            if abs(candidate - value) < 1e-9 or round(candidate, places) == value:
                return True
    return False


def ungrounded_value(task: str, answer: str, seen: Iterable[str]) -> str | None:
    """The first date, number or weekday ``answer`` states that neither ``task`` nor any text in
    ``seen`` holds (a value nothing computed or read); None when every one is grounded."""
    strings, numbers = _values(task)
    for text in seen:
        more_strings, more_numbers = _values(text)
        strings |= more_strings
        numbers += more_numbers
    rest = _LIST_MARKER.sub(" ", answer)
    for match in _DATE.finditer(rest):
        if _iso(match) not in strings:
            return match.group(0)
        rest = rest.replace(match.group(0), " ")
    for match in _TIME.finditer(rest):
        if match.group(0) not in strings:
            return match.group(0)
        rest = rest.replace(match.group(0), " ")
    for match in _NUMBER.finditer(rest):
        token = match.group(0).lstrip("-")
        if token.count(".") > 1:
            if token not in strings:
                return token
        elif not _number_seen(token, numbers):
            return token
    for match in _WEEKDAY.finditer(rest):
        if match.group(1).lower() not in strings:
            return match.group(1)
    return None


def computed_final(code: str) -> bool:
    """Whether the answer a block that ran gave was computed by it: ``final_answer`` is called
    with something other than a literal the model typed (``final_answer(531)``,
    ``final_answer("2024-03-11")``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # it ran with a broken paste blanked (code_prelude): what it answered, it computed
        return True
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id == "final_answer" and node.args]
    return bool(calls) and not all(isinstance(call.args[0], ast.Constant) for call in calls)


_LINE_QUESTION = re.compile(r"\b(?:which|what)\s+line\b|\bline\s+number|\bon\s+which\s+line\b", re.IGNORECASE)


def asks_for_a_line(task: str) -> bool:
    """Whether ``task`` asks for a line number ("On which line of main.py ...")."""
    return _LINE_QUESTION.search(task) is not None


def how_to_compute(value: str) -> str:
    """A hint for computing a guessed ``value``: dates and weekdays with datetime, anything else
    from the task's numbers or the data read."""
    if not value[:1].isdigit() or _DATE.fullmatch(value):
        return "with the datetime module"
    return "from the numbers in the task or the data you read"


def negative_count(task: str, answer: str) -> str | None:
    """The answer without its minus sign when ``task`` asks how many (how long, how far, the
    difference between two values) and ``answer`` is a negative number ("-22", "-22 days"): a
    subtraction done the wrong way round; else None."""
    match = _NEGATIVE.match(answer.strip())
    if match is None or _HOW_MANY.search(task) is None:
        return None
    return match.group(1)[1:] + match.group(2)


def line_out_of_range(task: str, answer: str, files: Iterable[tuple[str, str]]) -> tuple[str, str, int] | None:
    """``(value, path, lines)`` when ``task`` asks for a line number and ``answer``'s number is
    past the last line of every file read (a value from the line, "8080", given for its number);
    else None."""
    if not asks_for_a_line(task):
        return None
    match = re.search(r"(?<![\w.])\d+(?![\w.])", answer)
    texts = [(path, len(text.splitlines())) for path, text in files]
    if match is None or not texts or any(int(match.group(0)) <= count for _, count in texts):
        return None
    path, count = texts[0]
    return match.group(0), path, count
