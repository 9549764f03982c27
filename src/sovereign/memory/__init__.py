"""Persistent agent memory: encrypted facts, episodes and session summaries with hybrid search.

Entry points for other layers:

- ``MemoryStore.open(db, home)`` — the store (key from ``SOVEREIGN_MEMORY_KEY`` or
  ``home/memory.key``); ``add``, ``search``, ``list``, ``get``, ``history``, ``forget``, ``export``.
- ``memory_tools(store, owner, agent)`` — the agent's ``remember``/``recall``/``forget`` tools.
- ``recall_prefix(store, owner, agent, task, k)`` — memories for the context prefix at run start.
- ``flush_facts(store, owner, agent, facts)`` and ``flush_before_compaction(store, model, ...)`` —
  store durable facts before the runtime summarises a long transcript.
- ``Embedder`` — the verified local all-MiniLM-L6-v2 encoder (shared with ``knowledge``).
"""

from sovereign.memory.compaction import distill_facts, flush_before_compaction
from sovereign.memory.embeddings import Embedder
from sovereign.memory.models import MemoryHit, MemoryItem, WriteResult
from sovereign.memory.store import MemoryStore
from sovereign.memory.tools import flush_facts, memory_tools, recall_prefix

__all__ = [
    "Embedder", "MemoryHit", "MemoryItem", "MemoryStore", "WriteResult", "distill_facts",
    "flush_before_compaction", "flush_facts", "memory_tools", "recall_prefix",
]
