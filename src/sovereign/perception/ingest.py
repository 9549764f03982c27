"""OCR for knowledge ingestion: images and scanned PDF pages, read on the governed path."""

from __future__ import annotations

from typing import Any

from sovereign.errors import SovereignError
from sovereign.governance.governor import CallScope
from sovereign.governance.keys import Principal
from sovereign.knowledge.parsers import IngestError, Ocr
from sovereign.perception.governed import GovernedPerception

__all__ = ["ocr_function"]


def ocr_function(services: Any, principal: Principal | None = None, *, run_id: str | None = None) -> Ocr:
    """``ocr(image_bytes, what) -> text`` for ``KnowledgeBase(ocr=...)``: each image is one
    governed OCR call for ``principal`` (default: the local admin); a failure names the file."""
    governed = GovernedPerception(services.perception, services.governor,
                                  CallScope(principal or services.keys.local_principal(), run_id=run_id))

    def ocr(data: bytes, what: str) -> str:
        try:
            return governed.read_image_now(data, what=what).text
        except SovereignError as exc:
            raise IngestError(f"{what}: OCR failed: {exc.message}") from exc

    return ocr
