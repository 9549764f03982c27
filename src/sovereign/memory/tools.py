"""What the agent runtime uses from memory: the ``remember``/``recall``/``forget`` tools, the
recall prefix put at the start of each run, and the pre-compaction flush.

- ``memory_tools(store, owner=None, agent=None) -> list[Tool]``: tools bound to one owner and
  agent, or (None) to the calling run's (the model cannot reach another owner's memory whatever
  arguments it sends); the run's id, when the ``ToolContext`` has one, becomes the memory's
  source (``run:<id>``).
- ``recall_prefix(store, owner, agent, task, k=5) -> str``: a short "what you remember" block
  for the context prefix ("" when nothing relevant is stored).
- ``flush_facts(store, owner, agent, facts, source="compaction") -> list[WriteResult]``: store
  durable facts (deduplicated) before the runtime summarises a long transcript; see
  ``compaction.flush_before_compaction`` to have the model pick the facts first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sovereign.errors import NotFoundError, SovereignError
from sovereign.memory.models import WriteResult
from sovereign.memory.store import MemoryStore
from sovereign.tools.base import Effects, Tool, ToolContext, ToolError, tool

__all__ = ["memory_tools", "recall_prefix", "flush_facts", "RECALL_MIN_SIMILARITY"]

RECALL_MIN_SIMILARITY = 0.3


def _source(ctx: ToolContext | None) -> str:
    return f"run:{ctx.run_id}" if ctx is not None and ctx.run_id else "agent"


WRITES_MEMORY = Effects(reads_untrusted=False, reaches="memory")
"""``remember``/``forget``: change the owner's own memory (recalled later as untrusted), nothing outside."""
READS_MEMORY = Effects(reads_untrusted=True, source="memory", reaches="memory")
"""``recall``: memories may hold text that came from untrusted content."""


def memory_tools(store: MemoryStore | Callable[[], MemoryStore], owner: str | None = None,
                 agent: str | None = None) -> list[Tool]:
    """``remember``, ``recall`` and ``forget``, scoped to ``owner`` and ``agent``.

    ``owner``/``agent`` left None are the calling run's (``ToolContext.owner``/``agent``): the
    tools an agent resolves by name from config, the API or the CLI. ``store`` may be a function
    that opens the store on first use (loading the embedding model only when memory is used).
    """

    def scope(ctx: ToolContext | None) -> tuple[MemoryStore, str, str]:
        who = owner or (ctx.owner if ctx is not None else None)
        which = agent or (ctx.agent if ctx is not None else None)
        if not who or not which:
            raise ToolError("memory is not available: this run has no owner")
        return (store() if callable(store) else store), who, which

    @tool(effects=WRITES_MEMORY)
    def remember(content: str, ctx: ToolContext, confidence: float = 1.0) -> str:
        """Store a durable fact in long-term memory (near-duplicates merge, newer facts replace older ones).

        Args:
            content: the fact, one self-contained sentence.
            confidence: how sure you are, 0 to 1.
        """
        memory, who, which = scope(ctx)
        try:
            result = memory.add(who, content, agent=which, source=_source(ctx), confidence=confidence)
        except SovereignError as exc:
            raise ToolError(exc.message) from exc
        note = f" (replaces {result.replaced.id}: {result.replaced.content})" if result.replaced else ""
        return f"{result.action} {result.item.id}{note}"

    @tool(effects=READS_MEMORY)
    def recall(query: str, ctx: ToolContext, k: int = 5) -> str:
        """Search long-term memory for facts and past episodes relevant to a query.

        Args:
            query: what to look for.
            k: how many memories to return (1 to 20).
        """
        memory, who, which = scope(ctx)
        try:
            hits = memory.search(who, query, agent=which, k=max(1, min(k, 20)))
        except SovereignError as exc:
            raise ToolError(exc.message) from exc
        if not hits:
            return "no memories found"
        return "\n".join(f"[{h.item.id}] ({h.item.kind}, {h.item.updated_at[:10]}) {h.item.content}" for h in hits)

    @tool(effects=WRITES_MEMORY)
    def forget(memory_id: str, ctx: ToolContext) -> str:
        """Delete one memory (and the older versions it replaced) by its id, e.g. mem_0123abcd4567ef89.

        Args:
            memory_id: the id shown by recall.
        """
        memory, who, which = scope(ctx)
        try:
            item = memory.get(who, memory_id)
        except NotFoundError as exc:
            raise ToolError(exc.message) from exc
        if item.agent != which:
            raise ToolError(f"no memory item '{memory_id}'")
        removed = memory.forget(who, memory_id)
        return f"forgot {memory_id} ({removed} version{'s' if removed != 1 else ''})"

    return [remember, recall, forget]


def recall_prefix(store: MemoryStore, owner: str, agent: str, task: str, k: int = 5) -> str:
    """Memories relevant to ``task``, formatted for the start of the context ("" if none)."""
    if not task or not task.strip():
        return ""
    hits = [h for h in store.search(owner, task, agent=agent, k=k)
            if h.similarity >= RECALL_MIN_SIMILARITY or h.keyword]
    if not hits:
        return ""
    lines = [f"- {h.item.content} [{h.item.kind} {h.item.id}, {h.item.updated_at[:10]}]" for h in hits]
    return "Relevant memories (from earlier runs; may be out of date):\n" + "\n".join(lines)


def flush_facts(store: MemoryStore, owner: str, agent: str, facts: Iterable[str],
                source: str = "compaction") -> list[WriteResult]:
    """Store each non-empty fact (deduplicated); called before a transcript is summarised."""
    return [store.add(owner, fact, agent=agent, source=source) for fact in facts if fact and fact.strip()]
