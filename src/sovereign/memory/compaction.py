"""Before compaction: ask the model for the durable facts in a transcript and store them.

``flush_before_compaction(store, model, owner, agent, messages)`` is what the runtime calls just
before it summarises a long transcript, so that summarising never loses what the agent learned.
The model answers with a JSON list of short facts (constrained by a JSON schema); anything that
is not such a list stores nothing and is reported, never half-stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sovereign.kernel.messages import ChatRequest, Message, ResponseFormat
from sovereign.kernel.protocol import Model
from sovereign.memory.models import WriteResult
from sovereign.memory.store import MemoryStore
from sovereign.memory.tools import flush_facts

__all__ = ["distill_facts", "flush_before_compaction"]

_INSTRUCTION = (
    "List the durable facts in this conversation worth remembering in later sessions: user preferences,"
    " decisions, names, results, conclusions. One short self-contained sentence each; at most {limit}."
    ' Answer with JSON only: {{"facts": ["...", "..."]}}. If there are none, answer {{"facts": []}}.'
)
_SCHEMA = {"type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
           "required": ["facts"]}


def _transcript(messages: Sequence[Message], max_chars: int) -> str:
    lines = [f"{m.role}: {m.content}" for m in messages if m.content and m.role in ("user", "assistant", "tool")]
    return "\n".join(lines)[-max_chars:]


async def distill_facts(model: Model, messages: Sequence[Message], *, limit: int = 8,
                        max_tokens: int = 256, max_chars: int = 12_000) -> list[str]:
    """The durable facts the model finds in ``messages`` (an empty list when it gives none)."""
    request = ChatRequest(
        model=model.name,
        messages=[Message(role="system", content=_INSTRUCTION.format(limit=limit)),
                  Message(role="user", content=_transcript(messages, max_chars))],
        max_tokens=max_tokens, temperature=0.0,
        response_format=ResponseFormat(type="json_schema", schema=_SCHEMA, name="facts"),
    )
    response = await model.complete(request)
    try:
        facts = json.loads(response.message.content or "").get("facts", [])
    except (json.JSONDecodeError, AttributeError):
        return []
    return [f.strip() for f in facts if isinstance(f, str) and f.strip()][:limit]


async def flush_before_compaction(store: MemoryStore, model: Model, owner: str, agent: str,
                                  messages: Sequence[Message], *, run_id: str | None = None) -> list[WriteResult]:
    """Distil durable facts from ``messages`` and store them; returns what each write did."""
    facts = await distill_facts(model, messages)
    source = f"compaction:{run_id}" if run_id else "compaction"
    return flush_facts(store, owner, agent, facts, source=source)
