"""Knowledge base: ingest of each format (with a corrupt PDF), citations, re-ingest, write-back.

Unit tests distil with the deterministic ``FunctionModel`` from ``sovereign.testing``; the last
test runs write-back end to end on the real embedded model (``embedded_model`` fixture).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sovereign.errors import InvalidRequestError
from sovereign.kernel.messages import ChatRequest
from sovereign.knowledge import KnowledgeBase, knowledge_tools, write_back
from sovereign.knowledge.evaluation import evaluate_writeback, load_items
from sovereign.memory import Embedder
from sovereign.store import Database
from sovereign.testing import FunctionModel, text_response

DATA = Path(__file__).parent / "data" / "knowledge"


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R"
                       " /Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    model = Embedder()
    model.load()
    return model


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(DATA / "corpus", folder)
    (folder / "manual.pdf").write_bytes(make_pdf(["The pump must be primed before first start.",
                                                  "Replace the impeller gasket every 500 hours."]))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ngarbage")
    return folder


@pytest.fixture
def kb(tmp_path, embedder):
    db = Database(tmp_path / "sovereign.db")
    yield KnowledgeBase(db, embedder)
    db.close()


def _extractive(request: ChatRequest):
    """A deterministic distiller: the first two sentences of the first passage."""
    body = request.messages[-1].content.split("Passages:\n", 1)[1].split(") ", 1)[1]
    return text_response(". ".join(body.split(". ")[:2]))


def test_ingest_every_format_and_a_corrupt_pdf(kb, corpus):
    seen = []
    report = kb.ingest([corpus], progress=lambda path, outcome: seen.append((path.name, outcome)))
    assert ("broken.pdf", "failed") in seen and len(seen) == 6
    assert len(report.added) == 5 and len(report.failed) == 1
    assert "broken.pdf" in report.failed[0][1] and "PDF" in report.failed[0][1]
    formats = {Path(d["path"]).suffix: d["format"] for d in kb.documents()}
    assert formats == {".md": "markdown", ".html": "html", ".txt": "text", ".pdf": "pdf"}
    pdf_hit = kb.search("how often should the impeller gasket be replaced?", k=1)[0]
    assert Path(pdf_hit.citation.path).name == "manual.pdf" and pdf_hit.citation.page == 2
    html_hit = kb.search("oldest light station", k=1)[0]
    assert html_hit.citation.section == "Lighthouses of the United States > Boston Light"
    assert "secret" not in " ".join(h.text for h in kb.search("var secret", k=10))
    md_hit = kb.search("How long is a senator's term?", k=1)[0]
    assert md_hit.citation.section.endswith("Article I: The Legislative Branch") and "six-year" in md_hit.text


def test_reingest_unchanged_does_nothing_changed_replaces(kb, corpus):
    kb.ingest([corpus / "tea.txt"])
    before = kb.documents()
    again = kb.ingest([corpus / "tea.txt"])
    assert again.unchanged == [str(corpus / "tea.txt")] and again.chunks == 0 and kb.documents() == before
    (corpus / "tea.txt").write_text("Oolong tea is partly oxidised.\n\nIt sits between green and black tea.\n")
    changed = kb.ingest([corpus / "tea.txt"])
    assert len(changed.updated) == 1
    texts = " ".join(h.text for h in kb.search("tea", k=10))
    assert "Oolong" in texts and "Camellia" not in texts


def test_missing_and_unsupported_files_fail_clearly(kb, tmp_path):
    (tmp_path / "x.docx").write_text("nope")
    report = kb.ingest([tmp_path / "nothere.md", tmp_path / "x.docx"])
    assert [m for _, m in report.failed][0].endswith("no such file")
    assert "unsupported file type" in report.failed[1][1]
    with pytest.raises(InvalidRequestError):
        kb.search("  ")


def test_kb_search_tool_cites_sources(kb, corpus):
    kb.ingest([corpus / "solar_system.md"])
    (kb_search,) = knowledge_tools(kb)
    out = asyncio.run(kb_search.call({"query": "largest volcano", "k": 2}))
    assert "solar_system.md § The Solar System > Mars #" in out and "Olympus Mons" in out


def test_write_back_only_when_verified(kb, corpus):
    kb.ingest([corpus / "solar_system.md"])
    model = FunctionModel(_extractive)
    passages = kb.search("Which planet has rings of ice and rock?", k=1, include_units=False)
    question = "Which planet has rings of ice and rock?"
    assert asyncio.run(write_back(kb, model, question=question, answer="Saturn", passages=passages,
                                  verified=False)) is None
    unit = asyncio.run(write_back(kb, model, question=question, answer="Saturn", passages=passages, verified=True))
    hit = kb.search("What are Saturn's rings made of?", k=3)
    assert any(h.kind == "unit" and h.n == unit and h.sources[0].section.endswith("Saturn") for h in hit)
    unit_hit = next(h for h in hit if h.kind == "unit")
    assert unit_hit.passages and unit_hit.passages[0].citation.section.endswith("Saturn")
    # The unit brings its source passage: the passage does not take a second place of its own.
    assert all(h.citation != unit_hit.passages[0].citation for h in hit if h.kind == "chunk")


def test_writeback_raises_hit_rate(kb, corpus):
    kb.ingest([corpus])
    report = asyncio.run(evaluate_writeback(kb, FunctionModel(_extractive), load_items(DATA / "writeback_questions.json")))
    assert report.units_written == 16
    assert report.after_repeated >= report.before_repeated and report.after_paraphrased > report.before_paraphrased


@pytest.mark.integration
def test_write_back_end_to_end_on_real_model(kb, corpus, embedded_model):
    kb.ingest([corpus / "constitution.md"])
    question = "What is required to convict someone of treason?"
    passages = [h for h in kb.search(question, k=3, include_units=False) if "Article III" in h.citation.section]
    assert passages, "the gold passage should be retrieved"
    unit = asyncio.run(write_back(kb, embedded_model, question=question, passages=passages, verified=True,
                                  answer="Two witnesses to the same overt act, or a confession in open court.",
                                  max_tokens=64))
    assert unit is not None
    stored = next(u for u in kb.units() if u.n == unit)
    assert stored.sources and stored.sources[0].section.endswith("Article III: The Judicial Branch")
    hits = kb.search("How can a person be convicted of treason?", k=3)
    assert any(h.kind == "unit" and h.n == unit for h in hits)
