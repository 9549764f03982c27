"""Memory records as plain dataclasses: an item, a write's outcome, a search hit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["fact", "episode", "summary"]
KINDS: tuple[str, ...] = ("fact", "episode", "summary")
WriteAction = Literal["added", "merged", "superseded"]


@dataclass(slots=True)
class MemoryItem:
    id: str
    owner: str
    agent: str
    kind: str
    content: str
    source: str
    confidence: float
    created_at: str
    updated_at: str
    status: str = "active"
    superseded_by: str | None = None
    session: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class WriteResult:
    """What ``add`` did: ``added`` a new item, ``merged`` into a near-duplicate, or ``superseded``
    an older contradicting item (kept as history, ``replaced``)."""

    item: MemoryItem
    action: WriteAction
    replaced: MemoryItem | None = None


@dataclass(slots=True)
class MemoryHit:
    item: MemoryItem
    score: float  # reciprocal-rank fusion score
    similarity: float  # cosine similarity of the query and the item
    keyword: bool  # matched in the full-text index
