"""Text with layout from OCR boxes: words on one line share a row, wide gaps stay wide (columns
and tables keep their shape), indentation is kept, and a tall vertical gap starts a paragraph.
A page scanned askew is straightened first: the engine's text lines give the skew angle, and the
box centres are rotated back by it before rows are found."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

__all__ = ["Box", "deskew", "layout_text", "line_angle"]


@dataclass(frozen=True, slots=True)
class Box:
    """One recognised piece of text and its axis-aligned bounds in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    score: float = 1.0

    @property
    def height(self) -> float:
        return max(1.0, self.y1 - self.y0)

    @property
    def char_width(self) -> float:
        return max(1.0, (self.x1 - self.x0) / max(1, len(self.text)))


def line_angle(start: tuple[float, float], end: tuple[float, float]) -> float:
    """The angle (radians) of the baseline from ``start`` to ``end``; y grows downwards."""
    return math.atan2(end[1] - start[1], end[0] - start[0])


def deskew(boxes: list[Box], angles: list[float]) -> list[Box]:
    """``boxes`` with their centres rotated back by the median of ``angles`` (text lines' skew);
    unchanged when the page is straight (under a quarter of a degree)."""
    if not angles:
        return boxes
    angle = statistics.median(angles)
    if abs(angle) < math.radians(0.25):
        return boxes
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for box in boxes:
        cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        x, y = cx * cos + cy * sin, -cx * sin + cy * cos
        half_w, half_h = (box.x1 - box.x0) / 2, (box.y1 - box.y0) / 2
        out.append(replace(box, x0=x - half_w, y0=y - half_h, x1=x + half_w, y1=y + half_h))
    return out


def _rows(boxes: list[Box]) -> list[list[Box]]:
    """Group boxes whose vertical centres fall within half a line height of a row's centre."""
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: (b.y0 + b.y1) / 2):
        centre = (box.y0 + box.y1) / 2
        if rows:
            last = rows[-1]
            row_centre = sum((b.y0 + b.y1) / 2 for b in last) / len(last)
            row_height = sum(b.height for b in last) / len(last)
            if abs(centre - row_centre) <= 0.5 * max(row_height, box.height):
                last.append(box)
                continue
        rows.append([box])
    return [sorted(row, key=lambda b: b.x0) for row in rows]


def layout_text(boxes: list[Box]) -> str:
    """The boxes as plain text that keeps rows, columns, indentation and paragraphs."""
    boxes = [b for b in boxes if b.text.strip()]
    if not boxes:
        return ""
    char = sorted(b.char_width for b in boxes)[len(boxes) // 2]
    left = min(b.x0 for b in boxes)
    lines: list[str] = []
    previous_bottom: float | None = None
    for row in _rows(boxes):
        height = sum(b.height for b in row) / len(row)
        top = min(b.y0 for b in row)
        if previous_bottom is not None and top - previous_bottom > 0.9 * height:
            lines.append("")
        line = " " * min(40, round((row[0].x0 - left) / char))
        end = row[0].x0
        for index, box in enumerate(row):
            if index:
                gap = round((box.x0 - end) / char)
                line += " " * (1 if gap < 3 else min(gap, 40))
            line += box.text.strip()
            end = box.x1
        lines.append(line.rstrip())
        previous_bottom = max(b.y1 for b in row)
    return "\n".join(lines)
