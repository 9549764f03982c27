"""Does the merged answer carry every sub-agent's result?

A small model asked to merge short results often keeps one and drops the rest (the 0.5B merged
"Paris", "Tokyo", "Lima" and "Oslo" into "Tokyo"). The orchestrator checks the merge against the
results it was given and asks again, naming what was left out; what is still missing after that
is appended to the answer as it was found, so a completed sub-agent's work is never lost.

Only short results are judged (a value, a name, a sentence): every number in them must appear in
the merge, and at least half of their content words that the other results do not share. A long
result is a summary the merge may fairly rephrase, so it counts as carried.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["uncovered"]

_SHORT_WORDS = 12
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_NUMBER = re.compile(r"^\d")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_STOPWORDS = frozenset(
    "a an the is are was were be been of in on at to for from by with and or not no it its this that these those "
    "there here as so than then which who whom whose what when where why how i you he she we they them his her "
    "their our your my me us do does did has have had will would can could should may might must file files".split())


def _words(text: str) -> list[str]:
    return _WORD.findall(_THOUSANDS.sub("", text.lower()))


def uncovered(answer: str, results: list[tuple[str, str]]) -> list[str]:
    """The ids of the ``(id, result)`` pairs whose short result ``answer`` leaves out."""
    said = set(_words(answer))
    words = {node_id: _words(result) for node_id, result in results}
    # words two or more results share ("value", "city") prove nothing about any one of them
    shared = {w for w, n in Counter(w for own in words.values() for w in set(own)).items() if n > 1}
    missing = []
    for node_id, own in words.items():
        if not own or len(own) > _SHORT_WORDS:
            continue
        numbers = [w for w in own if _NUMBER.match(w)]
        content = {w for w in own if not _NUMBER.match(w) and w not in _STOPWORDS}
        content = (content - shared) or content
        if any(n not in said for n in numbers):
            missing.append(node_id)
        elif content and len(content & said) * 2 < len(content):
            missing.append(node_id)
    return missing
