"""Write-back: a verified answer's supporting passages, distilled by the model into a knowledge unit.

``await write_back(kb, model, question=..., answer=..., passages=hits, verified=True)`` asks the
model to condense the passages (with the answer as a hint of what mattered) into two or three
self-contained sentences, stores that unit beside the corpus with links to the passages' citations,
and returns its id. Nothing is written when the answer was not verified, when there are no
passages, or when the model returns nothing usable. Units are indexed by question and text, so a
later question that is repeated or paraphrased retrieves the unit directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.protocol import Model
from sovereign.knowledge.base import KbHit, KnowledgeBase

__all__ = ["write_back", "DISTIL_INSTRUCTION"]

DISTIL_INSTRUCTION = (
    "Condense the passages into a compact knowledge note that answers the question on its own."
    " Use only facts stated in the passages. Two or three sentences, no preamble."
)


async def write_back(kb: KnowledgeBase, model: Model, *, question: str, answer: str, passages: Sequence[KbHit],
                     verified: bool, max_tokens: int = 120) -> int | None:
    """Distil and store a knowledge unit for a verified answer; returns its id, or None."""
    sources = [p for p in passages if p.kind == "chunk"]
    if not verified or not sources or not question.strip():
        return None
    context = "\n\n".join(f"[{i + 1}] ({p.citation}) {p.text}" for i, p in enumerate(sources))
    request = ChatRequest(
        model=model.name, temperature=0.0, max_tokens=max_tokens,
        messages=[Message(role="system", content=DISTIL_INSTRUCTION),
                  Message(role="user", content=f"Question: {question}\nVerified answer: {answer}\n\nPassages:\n{context}")],
    )
    response = await model.complete(request)
    text = (response.message.content or "").strip()
    if len(text) < 10:
        return None
    return kb.add_unit(question, text, [p.citation for p in sources])
