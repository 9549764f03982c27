"""``/v1/kb``: the knowledge base — list documents, ingest a text document, search with citations.

Reading needs the ``read`` role, ingesting ``use``; a public agent reaches the knowledge base only
if its owner exposed it (``kb`` ``default`` or ``*``). An ingested upload is written whole under
``$SOVEREIGN_HOME/knowledge/uploads`` (the knowledge base keys documents by path), so sending the
same name again replaces that document's chunks, and unchanged text is skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sovereign.errors import InvalidRequestError
from sovereign.governance.authz import Action, authorize

__all__ = ["router"]

router = APIRouter(prefix="/v1/kb", tags=["knowledge"])

KB_NAME = "default"
TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".html", ".htm")
_SAFE_NAME = re.compile(r"^[\w][\w .-]{0,150}$")


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=160, description="file name, e.g. notes.md")
    content: str = Field(min_length=1, max_length=5_000_000)


def _kb(request: Request):
    """One knowledge base per app (its vector index is cached in memory)."""
    from sovereign.knowledge import KnowledgeBase

    state = request.app.state
    kb = getattr(state, "knowledge_base", None)
    if kb is None:
        kb = state.knowledge_base = KnowledgeBase(state.services.db)
    return kb


def _allowed(request: Request, action: Action) -> None:
    principal = authorize(request.state.principal, action=action)
    request.app.state.services.visibility.access_for(principal.identity_id).require("kb", KB_NAME)


def _citation(citation) -> dict:
    return {"path": citation.path, "file": Path(citation.path).name, "section": citation.section,
            "chunk": citation.chunk, "page": citation.page, "label": str(citation)}


def _hit(hit) -> dict:
    return {"n": hit.n, "kind": hit.kind, "text": hit.text, "citation": _citation(hit.citation),
            "score": hit.score, "similarity": hit.similarity,
            "sources": [_citation(s) for s in hit.sources], "passages": [_hit(p) for p in hit.passages]}


@router.get("/documents")
async def list_documents(request: Request) -> dict:
    _allowed(request, "read")
    docs = await asyncio.to_thread(_kb(request).documents)
    return {"object": "list", "data": [{**d, "file": Path(d["path"]).name} for d in docs]}


@router.get("/search")
async def search(request: Request, q: str = Query(min_length=1, max_length=2000),
                 k: int = Query(5, ge=1, le=100)) -> dict:
    _allowed(request, "read")
    hits = await asyncio.to_thread(_kb(request).search, q, k)
    return {"object": "list", "query": q, "data": [_hit(h) for h in hits]}


def _upload_path(request: Request, name: str) -> Path:
    if not _SAFE_NAME.match(name) or ".." in name:
        raise InvalidRequestError(f"document name '{name}' must be a plain file name (letters, digits, . _ - space)",
                                  param="name")
    if not name.lower().endswith(TEXT_SUFFIXES):
        raise InvalidRequestError(f"document name '{name}' must end in one of {', '.join(TEXT_SUFFIXES)}",
                                  param="name")
    folder = request.app.state.services.settings.home / "knowledge" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _write_whole(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@router.post("/documents", status_code=201)
async def ingest(body: DocumentIn, request: Request) -> dict:
    """Ingest one text document (markdown, plain text or HTML) sent as ``{name, content}``."""
    from sovereign.knowledge.parsers import IngestError

    _allowed(request, "use")
    path = _upload_path(request, body.name)
    kb = _kb(request)

    def run() -> tuple[str, int, int]:
        previous = path.read_bytes() if path.exists() else None
        _write_whole(path, body.content)
        try:
            return kb.ingest_file(path)
        except IngestError:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                _write_whole(path, previous.decode("utf-8"))
            raise

    try:
        outcome, chunks, pages = await asyncio.to_thread(run)
    except IngestError as exc:
        raise InvalidRequestError(f"could not ingest '{body.name}': {exc.message}", param="content") from exc
    return {"object": "kb.document", "name": body.name, "outcome": outcome, "chunks": chunks, "pages": pages}
