"""The one line a task asks to add to a file, and where: "Add the line # Title at the top of
notes.md", "Add the row dave,41 at the end of people.csv", "Append 'pay rent' to todo.txt".

A small model adding such a line often loses it on the way (it takes "# Title" for a Python
comment in its own block, or saves an edit of something else); a write that leaves the file
without that line, or without it where the task puts it, is then sent back with the block that
adds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AddedLine", "added_line"]

_ADD = re.compile(
    r"\b(?:add|append|insert|prepend|put)\s+(?:the\s+|a\s+|this\s+)?(?:new\s+)?(?:line|row|item|entry)\s+"
    r"(?P<text>.+?)\s+"
    r"(?P<where>(?:at|to)\s+the\s+(?:very\s+)?(?:top|beginning|start|end|bottom)|"
    r"as\s+(?:a\s+|the\s+)?(?:new\s+)?(?:first|last|final)\s+(?:line|row)|to|into|in)\b",
    re.IGNORECASE)
_APPEND = re.compile(r"\b(?:append|add)\s+(?P<q>['\"])(?P<text>[^'\"\n]+)(?P=q)\s+(?:to|at the end of)\b", re.IGNORECASE)
_TOP = re.compile(r"top|beginning|start|first", re.IGNORECASE)
_END = re.compile(r"end|bottom|last|final", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AddedLine:
    text: str
    position: str
    """``top``, ``end`` or ``any`` (the task does not say where)."""


def added_line(task: str) -> AddedLine | None:
    """The line ``task`` asks to add to a file and where, or None."""
    match = _ADD.search(task) or _APPEND.search(task)
    if match is None:
        return None
    text = match.group("text").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        text = text[1:-1].strip()
    if not text or len(text) > 200 or "\n" in text:
        return None
    where = match.groupdict().get("where") or ""
    if "prepend" in match.group(0).lower() or _TOP.search(where):
        return AddedLine(text, "top")
    if match.re is _APPEND or _END.search(where) or match.group(0).lower().startswith("append"):
        return AddedLine(text, "end")
    return AddedLine(text, "any")
