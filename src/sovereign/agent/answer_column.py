"""A "which <thing>" question answered with the number that picks the row, not the thing.

Asked "Which product in stock.csv has the fewest units in stock?", a small model computes
``min(row["units"] for row in rows)`` and answers "9": the value that picks the row, not the
product that row names. ``number_for_name`` finds a task asking which <noun> (or who) where a table the
run read has a column for that noun, answered with a bare number that a cell of another column
holds: the correction can then show the block that answers with the row's cell in the noun's
column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NumberForName", "number_for_name"]

_WHICH = re.compile(r"\b(?:which|what)\s+([A-Za-z]\w*)\b|\b(who)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\s*[-+]?\d+(?:\.\d+)?\s*\.?\s*")
_PEOPLE = ("name", "person", "employee", "student", "customer", "user", "owner", "author")


@dataclass(frozen=True, slots=True)
class NumberForName:
    path: str
    noun: str
    """What the task asks for ("product", or "who")."""
    column: str
    """The table's column for it."""
    by: str
    """The column whose cell holds the number answered."""


def _as_number(text: str) -> float | None:
    try:
        return float(text.strip().rstrip("."))
    except ValueError:
        return None


def _column_for(noun: str, header: list[str]) -> str | None:
    wanted = {noun, noun + "s", noun.removesuffix("s"), noun + "_name", noun + " name", noun + "name"}
    if noun == "who":
        wanted = set(_PEOPLE)
    return next((cell for cell in header if cell.strip().lower() in wanted), None)


def number_for_name(task: str, answer: str, files: Iterable[tuple[str, str]]) -> NumberForName | None:
    """The table, noun, its column and the column holding ``answer`` when ``task`` asks which
    <noun> (or who), ``answer`` is a bare number, a table read has a column for the noun, and a
    row holds that number in another column; else None."""
    if not _NUMBER.fullmatch(answer):
        return None
    value = _as_number(answer)
    nouns = [(m.group(1) or m.group(2)).lower() for m in _WHICH.finditer(task)]
    if value is None or not nouns:
        return None
    for path, text in files:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        delimiter = next((mark for mark in ",;\t|" if mark in lines[0]), None)
        if delimiter is None:
            continue
        rows = list(csv.reader(lines, delimiter=delimiter))
        header = [cell.strip() for cell in rows[0]]
        for noun in nouns:
            column = _column_for(noun, header)
            if column is None:
                continue
            at = header.index(column)
            if any(at < len(row) and _as_number(row[at]) == value for row in rows[1:]):
                return None  # the number is itself one of the column's values (an id)
            for row in rows[1:]:
                for index, cell in enumerate(row):
                    if index != at and index < len(header) and _as_number(cell) == value:
                        return NumberForName(path=path, noun=noun, column=column, by=header[index])
    return None
