"""OCR: RapidOCR (PP-OCRv6 ONNX networks from the verified weights cache) and Tesseract (Debian,
run as a separate process). Both return ``OcrResult``: the text with its layout kept, and the
recognised lines with their boxes and confidence.

Images are opened with Pillow, which checks what they are: bytes that are not an image, or an
image above ``max_pixels``, fail with a 4xx naming the problem before any engine runs.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from sovereign.perception.errors import EngineUnavailableError, PerceptionInputError, TooLargeError
from sovereign.perception.layout import Box, deskew, layout_text, line_angle

__all__ = ["OcrEngine", "OcrResult", "RapidOcrEngine", "TesseractEngine", "load_image", "TILE"]

TILE = 32  # the ledger counts an image as 32x32-pixel tiles


@dataclass(slots=True)
class OcrResult:
    text: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)

    @property
    def tiles(self) -> int:
        return max(1, -(-self.width // TILE) * -(-self.height // TILE))


def load_image(data: bytes, *, max_pixels: int, what: str = "image"):
    """A Pillow RGB image from ``data``; ``PerceptionInputError`` when it is not an image,
    ``TooLargeError`` above ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise PerceptionInputError(f"the {what} is empty", param=what)
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise TooLargeError(f"the {what} is too large: {width}x{height} pixels, the limit is {max_pixels:,} "
                                "([perception] max_image_pixels)", param=what)
        image.load()
    except UnidentifiedImageError as exc:
        raise PerceptionInputError(f"the {what} is not an image in a format this server reads "
                                   "(PNG, JPEG, WebP, GIF, BMP, TIFF)", param=what) from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PerceptionInputError(f"the {what} could not be decoded: {exc}", param=what) from exc
    return image.convert("RGB")


class OcrEngine(Protocol):
    def read(self, image) -> OcrResult: ...


class RapidOcrEngine:
    """RapidOCR on the detection, recognition and direction-classifier networks in ``folder``."""

    def __init__(self, det: Path, rec: Path, cls: Path, *, threads: int = 0) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise EngineUnavailableError("OCR needs rapidocr: pip install rapidocr==3.10.0") from exc
        params = {"Det.model_path": str(det), "Rec.model_path": str(rec), "Cls.model_path": str(cls),
                  "Global.log_level": "error", "Global.return_word_box": True}
        if threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        self._engine = RapidOCR(params=params)
        self._lock = threading.Lock()

    def read(self, image) -> OcrResult:
        with self._lock:
            output = self._engine(np.asarray(image)[:, :, ::-1].copy())  # RGB -> BGR, as OpenCV reads
        boxes = deskew(_word_boxes(output), _line_angles(output))
        return OcrResult(text=layout_text(boxes), width=image.width, height=image.height, boxes=boxes)


def _line_angles(output) -> list[float]:
    """The skew of each long detected line (its top edge), from RapidOCR's line polygons."""
    angles = []
    for points in output.boxes if output.boxes is not None else []:
        (x0, y0), (x1, y1) = points[0], points[1]
        height = abs(points[3][1] - points[0][1]) or 1
        if abs(x1 - x0) > 3 * height:
            angles.append(line_angle((x0, y0), (x1, y1)))
    return angles


def _word_boxes(output) -> list[Box]:
    """Word boxes (so a detected line that spans two table cells keeps its gap), else line boxes."""
    boxes = []
    lines = list(zip(output.boxes if output.boxes is not None else [], output.txts or (), output.scores or (),
                     strict=False))
    words = output.word_results if len(output.word_results or ()) == len(lines) else [None] * len(lines)
    for (points, text, score), line_words in zip(lines, words, strict=True):
        pieces = [(w[0], w[1], w[2]) for w in line_words or () if w and w[2] is not None]
        if not pieces:
            pieces = [(text, score, points)]
        for word, word_score, corners in pieces:
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            boxes.append(Box(float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)), word, float(word_score)))
    return boxes


class TesseractEngine:
    """The ``tesseract`` binary (English traineddata), page segmentation 3 (automatic)."""

    def __init__(self, binary: str | None = None, *, language: str = "eng") -> None:
        found = binary or shutil.which("tesseract")
        if found is None:
            raise EngineUnavailableError("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")
        self.binary = found
        self.language = language

    def read(self, image) -> OcrResult:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        result = subprocess.run([self.binary, "stdin", "stdout", "-l", self.language, "--psm", "3", "tsv"],
                                input=buffer.getvalue(), capture_output=True, timeout=120, check=False)
        if result.returncode != 0:
            raise PerceptionInputError(f"tesseract failed: {result.stderr.decode(errors='replace')[:200]}")
        boxes, angles = _tsv_boxes(result.stdout.decode("utf-8", errors="replace"))
        boxes = deskew(boxes, angles)
        return OcrResult(text=layout_text(boxes), width=image.width, height=image.height, boxes=boxes)


def _tsv_boxes(tsv: str) -> tuple[list[Box], list[float]]:
    """Tesseract's word rows (level 5) as boxes, and the skew of each line of two words or more."""
    boxes, lines = [], {}
    for line in tsv.splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) < 12 or cells[0] != "5" or not cells[11].strip():
            continue
        left, top, width, height = (int(v) for v in cells[6:10])
        box = Box(left, top, left + width, top + height, cells[11], max(0.0, float(cells[10])) / 100)
        boxes.append(box)
        lines.setdefault(tuple(cells[1:5]), []).append(box)
    angles = []
    for words in lines.values():
        if len(words) > 1 and words[-1].x1 - words[0].x0 > 3 * words[0].height:
            first, last = words[0], words[-1]
            angles.append(line_angle(((first.x0 + first.x1) / 2, (first.y0 + first.y1) / 2),
                                     ((last.x0 + last.x1) / 2, (last.y0 + last.y1) / 2)))
    return boxes, angles
