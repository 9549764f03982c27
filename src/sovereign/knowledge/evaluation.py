"""Measure write-back: retrieval hit rate on repeated and paraphrased questions, before and after.

A labelled item names a question, a paraphrase of it, and the gold passage (file name and
section prefix). A retrieval *hits* when one of the top ``k`` results is the gold passage, or a
knowledge unit whose sources include it. The run: measure hit@k for every question and
paraphrase; then, for each question, retrieve, treat the answer as verified when the gold
passage was retrieved (the labelled check), and write back the supporting passage; then measure
again — the originals now stand for repeated questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sovereign.kernel.protocol import Model
from sovereign.knowledge.base import Citation, KbHit, KnowledgeBase
from sovereign.knowledge.writeback import write_back

__all__ = ["LabelledItem", "load_items", "evaluate_writeback", "WritebackReport"]


@dataclass(slots=True, frozen=True)
class LabelledItem:
    question: str
    paraphrase: str
    file: str
    section: str


@dataclass(slots=True)
class WritebackReport:
    k: int
    before_repeated: float
    before_paraphrased: float
    after_repeated: float
    after_paraphrased: float
    units_written: int
    details: list[dict] = field(default_factory=list)


def load_items(path: Path) -> list[LabelledItem]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [LabelledItem(**item) for item in data["items"]]


def _is_gold(citation: Citation, item: LabelledItem) -> bool:
    return Path(citation.path).name == item.file and citation.section.split(" > ")[-1].startswith(item.section)


def is_hit(hits: list[KbHit], item: LabelledItem) -> bool:
    for hit in hits:
        cited = hit.sources if hit.kind == "unit" else [hit.citation]
        if any(_is_gold(c, item) for c in cited):
            return True
    return False


def _rate(kb: KnowledgeBase, queries: list[tuple[str, LabelledItem]], k: int) -> float:
    return sum(is_hit(kb.search(q, k=k), item) for q, item in queries) / max(1, len(queries))


async def evaluate_writeback(kb: KnowledgeBase, model: Model, items: list[LabelledItem], *, k: int = 1,
                             retrieve: int = 4, max_tokens: int = 96) -> WritebackReport:
    """Hit@k before and after write-back (see the module docstring); writes units into ``kb``."""
    repeated = [(i.question, i) for i in items]
    paraphrased = [(i.paraphrase, i) for i in items]
    before = (_rate(kb, repeated, k), _rate(kb, paraphrased, k))
    written, details = 0, []
    for item in items:
        hits = kb.search(item.question, k=retrieve, include_units=False)
        supporting = [h for h in hits if _is_gold(h.citation, item)]
        unit = await write_back(kb, model, question=item.question, answer=supporting[0].text if supporting else "",
                                passages=supporting, verified=bool(supporting), max_tokens=max_tokens)
        written += unit is not None
        details.append({"question": item.question, "unit": unit})
    after = (_rate(kb, repeated, k), _rate(kb, paraphrased, k))
    return WritebackReport(k, before[0], before[1], after[0], after[1], written, details)
