"""Agent tools: ``read_image`` and ``transcribe`` read workspace files (untrusted content, like
``read_file``), ``speak`` writes a new audio file under ``speech/`` in the workspace (so an agent
can answer by voice). Each call takes the governed path under the run's scope (its principal,
agent and run id), so the ledger, caps and audit see it like a model call."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sovereign.config import resolve_home
from sovereign.errors import SovereignError
from sovereign.governance.governor import CallScope
from sovereign.perception.audio import encode_audio
from sovereign.perception.governed import GovernedPerception
from sovereign.tools.base import Effects, Tool, ToolContext, ToolError, tool
from sovereign.tools.workspace import Workspace

__all__ = ["perception_tools"]

_READS = Effects(reads_untrusted=True, source="file", reaches="workspace")
_SPEAKS = Effects(reads_untrusted=False, acts_on_world=True, reaches="workspace")
_MAX_FILE = 64 * 1024 * 1024


def _governed(services: Any, ctx: ToolContext | None) -> GovernedPerception:
    scope = (ctx.extras.get("scope") if ctx is not None else None) or CallScope(
        services.keys.local_principal(), run_id=ctx.run_id if ctx is not None else None)
    return GovernedPerception(services.perception, services.governor, scope)


def _workspace(services: Any, ctx: ToolContext | None) -> Workspace:
    if ctx is not None and ctx.workspace is not None:
        return Workspace(Path(ctx.workspace))
    home = services.settings.home if services is not None else resolve_home()
    return Workspace(Path(home) / "workspace")


def _read(space: Workspace, path: str) -> bytes:
    target = space.resolve(path)
    if not target.is_file():
        raise ToolError(f"'{path}' is not a file in the workspace")
    if target.stat().st_size > _MAX_FILE:
        raise ToolError(f"'{path}' is larger than {_MAX_FILE // 2**20} MB")
    return target.read_bytes()


def perception_tools(services: Any) -> list[Tool]:
    """``read_image``, ``transcribe`` and ``speak`` on ``services``' perception engines."""

    @tool(effects=_READS)
    async def read_image(ctx: ToolContext, path: str) -> str:
        """Read the text in an image file of the workspace (PNG, JPEG, ...) by OCR, keeping its layout.

        Args:
            path: the image file, relative to the workspace.
        """
        data = _read(_workspace(services, ctx), path)
        try:
            result = await _governed(services, ctx).read_image(data, what=f"image '{path}'")
        except SovereignError as exc:
            raise ToolError(exc.message) from exc
        return result.text or f"(no text found in '{path}')"

    @tool(effects=_READS)
    async def transcribe(ctx: ToolContext, path: str, language: str | None = None) -> str:
        """Transcribe the speech in an audio file of the workspace (wav, mp3, ogg, flac, m4a...).

        Args:
            path: the audio file, relative to the workspace.
            language: the spoken language code, e.g. "en" (detected when not given).
        """
        data = _read(_workspace(services, ctx), path)
        try:
            transcript = await _governed(services, ctx).transcribe(data, language=language, what=f"audio '{path}'")
        except SovereignError as exc:
            raise ToolError(exc.message) from exc
        return transcript.text or f"(no speech in '{path}')"

    @tool(effects=_SPEAKS)
    async def speak(ctx: ToolContext, text: str, voice: str | None = None) -> str:
        """Say ``text`` aloud: writes a new WAV file under speech/ in the workspace and returns its path.

        Args:
            text: what to say.
            voice: an espeak-ng voice such as "en-gb" (the default voice when not given).
        """
        space = _workspace(services, ctx)
        try:
            stream = await _governed(services, ctx).speak(text, voice=voice)
            pcm = await stream.collect()
        except SovereignError as exc:
            raise ToolError(exc.message) from exc
        relative = f"speech/{uuid.uuid4().hex[:12]}.wav"
        target = space.resolve(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_audio(pcm, stream.rate, "wav"))
        return f"spoke {len(pcm) / 2 / stream.rate:.1f} s of audio into {relative}"

    return [read_image, transcribe, speak]
