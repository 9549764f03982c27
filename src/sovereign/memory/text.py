"""Text normalisation shared by memory and knowledge search: words, stems, stop words."""

from __future__ import annotations

import re

__all__ = ["words", "terms", "fts_or_query"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP_WORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have he her his how i"
    " if in into is it its me my of on or our she so than that the their them then there these they"
    " this to was we were what when where which who whom why will with would you your".split()
)
_SUFFIXES = ("ingly", "edly", "ness", "ment", "ing", "ies", "ied", "ed", "es", "ly", "s")


def words(text: str) -> list[str]:
    """Lower-cased words, in order, stop words included."""
    return [w.lower() for w in _WORD.findall(text)]


def stem(word: str) -> str:
    """A light suffix stripper: enough to match plural/tense variants, never below 3 letters."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            return base + "y" if suffix in ("ies", "ied") else base
    return word


def terms(text: str) -> list[str]:
    """Search terms: stemmed words without stop words (keeps duplicates, for BM25 term counts)."""
    return [stem(w) for w in words(text) if w not in STOP_WORDS]


def fts_or_query(tokens: list[str]) -> str:
    """An FTS5 query matching any of ``tokens`` (each quoted, so no token is read as syntax)."""
    unique = list(dict.fromkeys(t.replace('"', "") for t in tokens if t))
    return " OR ".join(f'"{t}"' for t in unique)
