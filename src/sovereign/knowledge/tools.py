"""The agent's ``kb_search`` tool: retrieval with citations (file, section, chunk)."""

from __future__ import annotations

from collections.abc import Callable

from sovereign.errors import SovereignError
from sovereign.knowledge.base import KnowledgeBase
from sovereign.tools.base import Effects, Tool, ToolError, tool

__all__ = ["knowledge_tools", "format_hits"]


def format_hits(hits) -> str:
    """Each hit under its citation; a knowledge unit is followed by the source passages it brings."""
    lines = []
    for hit in hits:
        if hit.kind == "chunk":
            lines.append(f"[{hit.citation}]\n{hit.text}")
            continue
        lines.append(f"[knowledge unit {hit.n}; from {'; '.join(str(s) for s in hit.sources)}]\n{hit.text}")
        lines.extend(f"[{p.citation}] (source of knowledge unit {hit.n})\n{p.text}" for p in hit.passages)
    return "\n\n".join(lines) or "no passages found"


def knowledge_tools(kb: KnowledgeBase | Callable[[], KnowledgeBase]) -> list[Tool]:
    """``kb_search`` over ``kb`` (or over what ``kb()`` opens on first use)."""

    @tool(effects=Effects(reads_untrusted=True, source="retrieval", reaches="kb"))
    def kb_search(query: str, k: int = 4) -> str:
        """Search the knowledge base; each passage comes with its citation (file, section, chunk).

        Args:
            query: what to look for.
            k: how many passages (1 to 10).
        """
        try:
            base = kb() if callable(kb) else kb
            return format_hits(base.search(query, k=max(1, min(k, 10))))
        except SovereignError as exc:
            raise ToolError(exc.message) from exc

    return [kb_search]
