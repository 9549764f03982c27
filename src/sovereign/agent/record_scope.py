"""An answer taken from a part of a file that is not the part the task asks about.

Asked "According to CHANGES.md, who released version 2.1?", a small model writes
``re.search(r"Released by (\\w+)", text)``: the first match is in the section about 2.2, and it
answers "Priya". ``off_record`` splits each file the run read into records (the lines of a table
below its header; otherwise paragraphs, a Markdown heading opening a new one), finds a word of the
task that only one record holds (the key: "2.1"), and reports an answer that the file holds only
in other records — so the agent can show the model the record the task is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["OffRecord", "off_record", "record_about", "records"]

_TOKEN = re.compile(r"[A-Za-z0-9][\w@-]*(?:\.\w+)*")
_DELIMITED = re.compile(r"[,;\t|]")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_NUMBER_ONLY = re.compile(r"[\s$€£%.,+-]*\d[\d\s$€£%.,+-]*")
_COMMON = frozenset(
    "a an and are as at be by did do does for from give gives given has have how in is it its me of on or "
    "tell the their this to was were what when where which who whom whose why with according file files "
    "line lines text".split())


@dataclass(frozen=True, slots=True)
class OffRecord:
    path: str
    key: str
    """The task's word that only one record of the file holds."""
    record: str
    """That record: the part of the file the task asks about."""


def records(text: str) -> list[str]:
    """The records of ``text``: the rows of a delimited table (header left out), else its
    paragraphs (blank lines between them, or a Markdown heading starting one)."""
    lines = text.strip("\n").splitlines()
    if len(lines) >= 3 and _DELIMITED.search(lines[0]) and all(line.strip() for line in lines):
        return lines[1:]
    out: list[list[str]] = [[]]
    for line in lines:
        if not line.strip() or _HEADING.match(line):
            if out[-1]:
                out.append([])
            if not line.strip():
                continue
        out[-1].append(line)
    return ["\n".join(part) for part in out if part]


def _holds(text: str, term: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(term)}(?![\w]|\.\w)", text, re.IGNORECASE) is not None


def _keys(task: str) -> list[str]:
    """The task's words that can identify a record: ones holding a digit ("2.1", "A1") and
    capitalised names inside a sentence ("Olivia"); not common words ("version")."""
    out = []
    for match in _TOKEN.finditer(task):
        word = match.group(0)
        if len(word) < 2 or word.lower() in _COMMON or word in out:
            continue
        before = task[:match.start()].rstrip()
        starts_sentence = not before or before[-1] in ".?!:\"'"
        if any(c.isdigit() for c in word) or word[0].isupper() and not starts_sentence:
            out.append(word)
    return out


def record_about(task: str, files: Iterable[tuple[str, str]]) -> OffRecord | None:
    """The first file and record that alone, of two or more records in that file, holds a word
    ``task`` names (the part of contact.txt about "Oslo"); else None."""
    words = _keys(task)
    for path, text in files:
        parts = records(text)
        if len(parts) < 2:
            continue
        for word in words:
            holding = [part for part in parts if _holds(part, word)]
            if len(holding) == 1:
                return OffRecord(path=path, key=word, record=holding[0])
    return None


def off_record(task: str, answer: str, files: Iterable[tuple[str, str]]) -> OffRecord | None:
    """The file, key and record when ``answer`` (a short value, not a number) sits only in
    records of a file other than the one record holding a word ``task`` names; else None."""
    value = answer.strip().strip("\"'`.")
    if not value or len(value) > 60 or "\n" in value or _NUMBER_ONLY.fullmatch(value):
        return None
    words = _keys(task)
    for path, text in files:
        parts = records(text)
        if len(parts) < 2 or not any(_holds(part, value) for part in parts):
            continue
        for word in words:
            if _holds(value, word):
                continue
            holding = [part for part in parts if _holds(part, word)]
            if len(holding) == 1 and not _holds(holding[0], value):
                return OffRecord(path=path, key=word, record=holding[0])
    return None
