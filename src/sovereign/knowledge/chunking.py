"""Split sections into chunks that keep headings and paragraphs whole where they fit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sovereign.knowledge.parsers import Section

__all__ = ["Chunk", "chunk_sections", "MAX_CHARS"]

MAX_CHARS = 1200
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(slots=True)
class Chunk:
    section: str
    text: str
    ordinal: int = 0
    page: int | None = None


def _pieces(paragraph: str, limit: int) -> list[str]:
    """A paragraph, or its sentences grouped under ``limit`` (words cut only as a last resort)."""
    if len(paragraph) <= limit:
        return [paragraph]
    out, current = [], ""
    for sentence in _SENTENCE.split(paragraph):
        while len(sentence) > limit:
            out.append(sentence[:limit])
            sentence = sentence[limit:]
        if current and len(current) + 1 + len(sentence) > limit:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def chunk_sections(sections: list[Section], max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Chunks never cross a section; paragraphs are packed together up to ``max_chars``."""
    chunks: list[Chunk] = []
    for section in sections:
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", section.text)]
        current = ""
        for paragraph in filter(None, paragraphs):
            for piece in _pieces(paragraph, max_chars):
                if current and len(current) + 2 + len(piece) > max_chars:
                    chunks.append(Chunk(section.heading, current, page=section.page))
                    current = piece
                else:
                    current = f"{current}\n\n{piece}" if current else piece
        if current:
            chunks.append(Chunk(section.heading, current, page=section.page))
    for ordinal, chunk in enumerate(chunks):
        chunk.ordinal = ordinal
    return chunks
