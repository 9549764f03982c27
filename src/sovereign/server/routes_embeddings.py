"""``/v1/embeddings``: the embedding model the memory uses, on the governed path.

Input: a string, a list of strings, a list of token ids or a list of token-id lists (ids of the
model's own WordPiece tokenizer, read as given). ``encoding_format`` ``float`` or ``base64``
(little-endian float32, what the ``openai`` SDK asks for by default). ``dimensions`` other than
the model's own is refused: the vectors are not truncatable (not Matryoshka-trained).
"""

from __future__ import annotations

import base64
import uuid

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sovereign.errors import InvalidRequestError, UnknownModelError
from sovereign.governance.governed_embedder import GovernedEmbedder
from sovereign.governance.governor import CallScope

__all__ = ["router", "EMBEDDING_MODEL_ALIASES"]

router = APIRouter(tags=["embeddings"])

MAX_INPUTS = 2048
EMBEDDING_MODEL_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, str):
            value = [value]
        if not value:
            raise ValueError("input must not be empty")
        if len(value) > MAX_INPUTS and not isinstance(value[0], int):
            raise ValueError(f"at most {MAX_INPUTS} inputs in one request")
        for index, item in enumerate(value):
            if isinstance(item, str | list) and len(item) == 0:
                raise ValueError(f"input item {index} is empty")
        return value

    @field_validator("encoding_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in ("float", "base64"):
            raise ValueError(f"encoding_format must be 'float' or 'base64', not '{value}'")
        return value


def _model_name(requested: str | None, model_id: str) -> str:
    if requested is None or requested == model_id or requested in EMBEDDING_MODEL_ALIASES:
        return model_id
    raise UnknownModelError(
        f"embedding model '{requested}' does not exist; this server embeds with '{model_id}'", param="model")


def _token_ids(items: list, vocab_size: int) -> list[list[int]]:
    sequences = [items] if isinstance(items[0], int) else items
    for index, sequence in enumerate(sequences):
        bad = next((t for t in sequence if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise InvalidRequestError(
                f"input item {index} has token id {bad}, outside the model's vocabulary (0..{vocab_size - 1})",
                param="input")
    return sequences


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict:
    services = request.app.state.services
    embedder = services.embedder
    name = _model_name(body.model, embedder.model_id)
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise InvalidRequestError(
            f"dimensions={body.dimensions} is not supported: '{name}' returns {embedder.dim}-dimensional "
            "vectors and cannot shorten them", param="dimensions", code="unsupported_dimensions")
    scope = CallScope(request.state.principal, request_id="emb-" + uuid.uuid4().hex[:24])
    governed = GovernedEmbedder(embedder, services.governor, scope)
    items = body.input
    if isinstance(items[0], str):
        result = await governed.embed(items)
    else:
        result = await governed.embed_ids(_token_ids(items, embedder.vocab_size))
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(result.vectors)]
    tokens = result.usage.prompt_tokens
    return {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "cost_usd": result.cost_usd}
