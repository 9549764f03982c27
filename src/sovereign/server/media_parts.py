"""Chat content parts that carry media (``image_url``, ``input_audio``) become text parts before
the request reaches the model: what OCR read or what was said, marked as untrusted content.
The OCR and transcription calls take the governed path under the request's principal and id.
A model that reads images itself (``vision`` in its registry entry) gets the images instead, as
data URLs (a workspace file is read and checked to be an image first)."""

from __future__ import annotations

from pathlib import Path

from sovereign.governance.governor import CallScope
from sovereign.governance.injection import Taint
from sovereign.governance.keys import Principal
from sovereign.perception.content import MediaReader
from sovereign.server.schemas import ChatCompletionRequest, ContentPart
from sovereign.tools.workspace import Workspace

__all__ = ["expand_media", "has_media"]

_MEDIA = ("image_url", "input_audio")


def has_media(body: ChatCompletionRequest) -> bool:
    return any(isinstance(m.content, list) and any(p.type in _MEDIA for p in m.content) for m in body.messages)


async def expand_media(body: ChatCompletionRequest, services, principal: Principal, request_id: str) -> None:
    """Replace every media part of ``body`` by the text it holds (in place); the principal must be
    allowed the chat model before any media is read."""
    if not has_media(body):
        return
    name = body.model or services.settings.model_for("instant")
    if name != "auto":  # a routed request authorises the model the router picks
        services.governor.authorize(CallScope(principal, request_id=request_id), name)
    native = name in services.registry and services.registry.get(name).vision
    reader = MediaReader(services.governed_perception(principal, request_id=request_id),
                         Workspace(Path(services.settings.home) / "workspace"),
                         Taint(audit=services.audit, actor=principal.identity_name),
                         max_bytes=services.settings.server.max_body_bytes)
    for m, message in enumerate(body.messages):
        if not isinstance(message.content, list):
            continue
        for p, part in enumerate(message.content):
            where = f"messages.{m}.content.{p}"
            if part.type == "image_url" and part.image_url is not None and native:
                part.image_url.url = await reader.data_url(part.image_url.url, f"{where}.image_url.url")
                continue
            if part.type == "image_url" and part.image_url is not None:
                text = await reader.image(part.image_url.url, f"{where}.image_url")
            elif part.type == "input_audio" and part.input_audio is not None:
                text = await reader.audio(part.input_audio.data, part.input_audio.format, f"{where}.input_audio")
            else:
                continue
            message.content[p] = ContentPart(type="text", text=("\n" if p else "") + text + "\n")
