"""Media in chat content: an image (a data URL or a workspace file) is read by OCR and audio is
transcribed; the text comes back wrapped as untrusted content (``governance.injection``), so the
model is told not to obey it, and any injection attempt in it is audited.

Remote ``http(s)`` image URLs are not fetched here: the OS is offline by default.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from sovereign.governance.injection import Taint
from sovereign.perception.errors import PerceptionInputError, TooLargeError
from sovereign.perception.governed import GovernedPerception
from sovereign.perception.ocr import load_image
from sovereign.tools.base import ToolError
from sovereign.tools.workspace import Workspace

__all__ = ["MediaReader", "decode_base64", "media_bytes"]

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$",
                       re.DOTALL)


def decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PerceptionInputError(f"{what} is not valid base64 ({exc})", param=what) from exc


def media_bytes(reference: str, workspace: Workspace, *, what: str, max_bytes: int) -> tuple[bytes, str]:
    """``(bytes, origin)`` of a data URL, a ``file:`` URL or a path in ``workspace``."""
    if reference.startswith("data:"):
        match = _DATA_URL.match(reference)
        if match is None or not match.group("b64"):
            raise PerceptionInputError(f"{what} is a data URL without base64 data "
                                       "(expected data:image/png;base64,...)", param=what)
        data = decode_base64(match.group("data"), what)
        return data, f"data URL ({match.group('type') or 'unknown type'})"
    if re.match(r"^[a-z][a-z0-9+.-]*://", reference, re.IGNORECASE) and not reference.startswith("file://"):
        raise PerceptionInputError(f"{what}: remote URLs are not fetched (the OS is offline by default); send the "
                                   "image as a data URL or name a file in the workspace", param=what)
    path = reference.removeprefix("file://")
    try:
        target = workspace.resolve(path)
    except ToolError as exc:
        raise PerceptionInputError(f"{what}: {exc.message}", param=what) from exc
    if not target.is_file():
        raise PerceptionInputError(f"{what}: '{path}' is not a file in the workspace ({workspace.root})", param=what)
    size = target.stat().st_size
    if size > max_bytes:
        raise TooLargeError(f"{what}: '{path}' has {size} bytes, more than the limit of {max_bytes}", param=what)
    return target.read_bytes(), f"workspace file {workspace.relative(target)}"


@dataclass
class MediaReader:
    """Turns media parts into marked text, through ``governed`` (ledger, caps, audit) and ``taint``."""

    governed: GovernedPerception
    workspace: Workspace
    taint: Taint
    max_bytes: int = 64 * 1024 * 1024

    async def image(self, reference: str, what: str) -> str:
        data, origin = media_bytes(reference, self.workspace, what=what, max_bytes=self.max_bytes)
        result = await self.governed.read_image(data, what=what)
        text = result.text or "(no text found in the image)"
        return (f"[image: {result.width}x{result.height} pixels, {origin}; its text, read by OCR with its layout:]\n"
                + self.taint.observe(text, "file", f"image, {origin}"))

    async def data_url(self, reference: str, what: str) -> str:
        """A data URL of the image ``reference`` names, checked to be an image within the limits,
        for a model that reads images itself."""
        from PIL import Image

        data, _ = media_bytes(reference, self.workspace, what=what, max_bytes=self.max_bytes)
        load_image(data, max_pixels=self.governed.limits.max_image_pixels, what=what)  # raises unless an image
        kind = (Image.open(io.BytesIO(data)).format or "png").lower()
        return f"data:image/{kind};base64," + base64.b64encode(data).decode()

    async def audio(self, data_b64: str, fmt: str | None, what: str) -> str:
        data = decode_base64(data_b64, what)
        transcript = await self.governed.transcribe(data, what=what)
        kind = f"{fmt} " if fmt else ""
        return (f"[{kind}audio: {transcript.duration:.1f} s, language {transcript.language}; what is said in it:]\n"
                + self.taint.observe(transcript.text or "(no speech)", "file", "audio"))
