"""Turn Markdown, text, HTML and PDF files into sections (heading path, text, page); images and
the pages of scanned PDFs (no text layer) are read by OCR when an ``Ocr`` function is given."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from collections.abc import Callable
from pathlib import Path

from sovereign.errors import UserError

__all__ = ["Ocr", "Section", "parse_file", "SUFFIXES", "IngestError"]

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
            ".html": "html", ".htm": "html", ".pdf": "pdf", ".png": "image", ".jpg": "image", ".jpeg": "image",
            ".tif": "image", ".tiff": "image", ".bmp": "image", ".webp": "image", ".gif": "image"}
Ocr = Callable[[bytes, str], str]
"""``ocr(image_bytes, what)``: the text in an image (``perception.ingest.ocr_function``)."""
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


class IngestError(UserError):
    """A file could not be read or parsed; the message names the file and why."""

    code = "ingest_failed"


@dataclass(slots=True)
class Section:
    heading: str  # "Title > Subtitle", or "" before the first heading
    text: str
    page: int | None = None


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_markdown(text: str) -> list[Section]:
    sections, trail, lines, fence = [], [], [], False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(" > ".join(trail), body))
        lines.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        match = None if fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            del trail[level - 1:]
            trail.append(match.group(2))
        else:
            lines.append(line)
    flush()
    return sections


class _HtmlSections(HTMLParser):
    _BLOCKS = {"p", "div", "li", "br", "tr", "section", "article", "blockquote", "pre", "table", "ul", "ol"}
    _SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.trail: list[str] = []
        self.buffer: list[str] = []
        self.heading: list[str] | None = None
        self.level = 0
        self.skipping = 0

    def _flush(self) -> None:
        body = re.sub(r"\n\s*\n+", "\n\n", "".join(self.buffer)).strip()
        if body:
            self.sections.append(Section(" > ".join(self.trail), body))
        self.buffer = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading, self.level = [], int(tag[1])
        elif tag in self._BLOCKS:
            self.buffer.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            title = " ".join("".join(self.heading).split())
            del self.trail[self.level - 1:]
            self.trail.append(title)
            self.heading = None
        elif tag in self._BLOCKS:
            self.buffer.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        (self.heading if self.heading is not None else self.buffer).append(data)


def parse_html(text: str) -> list[Section]:
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.sections


def parse_pdf(path: Path, ocr: Ocr | None = None) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(str(path), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
        if ocr is not None:  # a scanned page has no text layer: read its images
            pages = [text if text.strip() else _ocr_page(reader.pages[n], ocr, f"{path} page {n + 1}")
                     for n, text in enumerate(pages)]
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"{path}: not a readable PDF ({exc})") from exc
    sections = [Section(f"page {number}", text.strip(), page=number)
                for number, text in enumerate(pages, start=1) if text.strip()]
    if not sections and pages:
        hint = "its page images hold no text OCR can read" if ocr else "scanned? OCR is not available here"
        raise IngestError(f"{path}: the PDF has no extractable text ({hint})")
    return sections


def _ocr_page(page, ocr: Ocr, what: str) -> str:
    return "\n\n".join(text for image in page.images if (text := ocr(image.data, what).strip()))


def parse_image(path: Path, ocr: Ocr | None) -> list[Section]:
    if ocr is None:
        raise IngestError(f"{path}: an image needs OCR, which is not available here")
    text = ocr(path.read_bytes(), str(path)).strip()
    return [Section("", text, page=1)] if text else []


def parse_file(path: Path, ocr: Ocr | None = None) -> tuple[str, list[Section], int]:
    """``(format, sections, pages)`` of ``path``; raises ``IngestError`` with a clear reason."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise IngestError(f"{path}: unsupported file type '{path.suffix}' (use {', '.join(sorted(SUFFIXES))})")
    try:
        if kind == "pdf":
            sections = parse_pdf(path, ocr)
            return kind, sections, max((s.page or 0) for s in sections) if sections else 0
        if kind == "image":
            return kind, parse_image(path, ocr), 1
        text = _read_text(path)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if "\x00" in text:
        raise IngestError(f"{path}: looks binary, not {kind}")
    sections = parse_markdown(text) if kind == "markdown" else parse_html(text) if kind == "html" else \
        [Section("", text.strip())] if text.strip() else []
    pages = max(1, -(-len(text) // 2000)) if text.strip() else 0  # a text "page" is 2,000 characters
    return kind, sections, pages
