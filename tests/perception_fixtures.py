"""Helpers for the perception tests: speech made with espeak-ng, text pages drawn with Pillow,
and an API client whose perception defaults are the light models (whisper-tiny.en, espeak-ng)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LIGHT = '[perception]\ntranscription = "whisper-tiny.en"\nspeech = "espeak-ng"\n'


def spoken(text: str, path: Path, *, voice: str = "en-us", speed: int = 160) -> Path:
    """``text`` spoken by espeak-ng into a WAV file at ``path``."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def page(lines: list[str], *, size: tuple[int, int] = (900, 320), font_size: int = 26) -> bytes:
    """A white PNG with ``lines`` of black text, one under the other."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for n, line in enumerate(lines):
        draw.text((30, 30 + n * int(font_size * 1.8)), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()
