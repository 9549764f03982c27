"""Whether a file's text still parses as what its name says (Python, JSON, TOML; a CSV whose rows
all have its header's number of fields), checked after
a write so an agent that breaks a file hears it at once (parsing only: nothing is run); and
whether a write that added lines left a stray blank line before them."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import PurePath

__all__ = ["BLANK_LINE_NOTE", "SYNTAX_WARNING", "stray_blank_line", "syntax_problem"]

SYNTAX_WARNING = "warning: the file does not parse"
"""How a write's result starts its note on a file left unparseable (the runtime looks for it)."""
BLANK_LINE_NOTE = "note: line {line} is empty: the text before it already ended with a line break"
"""A write's note on a blank line it put between a file's old text and what it added."""


def stray_blank_line(old: str | None, new: str) -> int | None:
    """The number of the empty line a write put right after ``old`` text (which had none) when
    it added lines to it — an added ``"\\nnew line"`` after a text that ends with its own line
    break, the commonest slip in appending a line; else None."""
    if not old or not old.endswith("\n") or not new.startswith(old) or not new[len(old):].startswith("\n"):
        return None
    if not new[len(old):].strip() or any(not line.strip() for line in old.splitlines()):
        return None
    return old.count("\n") + 1


def syntax_problem(name: str, text: str) -> str | None:
    """Why ``text`` does not parse as the kind of file ``name`` is, or None (also for kinds not
    checked)."""
    suffix = PurePath(name).suffix.lower()
    try:
        if suffix == ".py":
            compile(text, name, "exec", dont_inherit=True)
        elif suffix == ".json":
            json.loads(text)
        elif suffix == ".toml":
            tomllib.loads(text)
        elif suffix in (".csv", ".tsv"):
            return _ragged_row(text, "\t" if suffix == ".tsv" else None)
        else:
            return None
    except SyntaxError as exc:
        where = f" (line {exc.lineno}: {(exc.text or '').strip()[:80]})" if exc.lineno else ""
        return f"{type(exc).__name__}: {exc.msg}{where}"
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _ragged_row(text: str, delimiter: str | None) -> str | None:
    """The first row of a delimited text whose number of fields differs from its header's (a
    header written as a list of characters, a row of dict keys), or None."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    if delimiter is None:
        delimiter = next((mark for mark in ",;\t|" if mark in lines[0]), ",")
    try:
        rows = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error as exc:
        return f"csv.Error: {exc}"
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            return (f"ValueError: row {number} has {len(row)} fields but the header line has {width} "
                    f"(header: {lines[0][:60]!r}; row {number}: {lines[number - 1][:60]!r})")
    return None
