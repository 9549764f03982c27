"""Document ingestion and cited retrieval, with write-back of distilled knowledge units.

- ``KnowledgeBase(db, embedder)`` — ``ingest(paths)``, ``search(query, k)``, ``add_unit``, ``units``.
- ``write_back(kb, model, question=, answer=, passages=, verified=)`` — distil a verified answer's
  passages into a unit indexed beside the corpus.
- ``knowledge_tools(kb)`` — the agent's ``kb_search`` tool.
"""

from sovereign.knowledge.base import Citation, IngestReport, KbHit, KnowledgeBase
from sovereign.knowledge.parsers import IngestError
from sovereign.knowledge.tools import format_hits, knowledge_tools
from sovereign.knowledge.writeback import write_back

__all__ = ["Citation", "IngestError", "IngestReport", "KbHit", "KnowledgeBase", "format_hits",
           "knowledge_tools", "write_back"]
