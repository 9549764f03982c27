"""Labelled sets for the perception benchmarks, built on the spot (nothing downloaded): sentences
written for this benchmark spoken by espeak-ng and Piper at several voices and speeds, and text
pages rendered with Pillow (clean, noisy, rotated, scanned-looking). Plus the real, public-domain
material shipped in ``data/perception/`` (a scanned book page, a speech recording; see its README),
scored separately. Plus WER and CER."""

from __future__ import annotations

import io
import random
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SENTENCES = [
    "The library opens early in the morning and closes late in the evening.",
    "Please send the quarterly report to the finance team before Friday.",
    "A small boat drifted slowly across the quiet lake at sunset.",
    "Remember to water the plants on the balcony while I am away.",
    "The train to the coast was delayed by almost half an hour.",
    "She found an old map of the city hidden inside a dusty book.",
    "Our new kitchen has a large window that faces the garden.",
    "Turn left at the second traffic light and park behind the bakery.",
]
# (engine, voice, speed): espeak-ng voices at three speeds (formant synthesis), the Piper voice at
# two (neural), and three CMU Flite voices (statistical parametric: US female, US male, Scottish male).
VOICES = [("espeak-ng", "en-us", 1.0), ("espeak-ng", "en-gb+f3", 0.85), ("espeak-ng", "en-us+m3", 1.2),
          ("piper-joe", None, 1.0), ("piper-joe", None, 1.25),
          ("flite", "slt", 1.0), ("flite", "rms", 1.0), ("flite", "awb", 1.0)]

PARAGRAPHS = [
    ["Minutes of the planning meeting", "The committee agreed to extend the opening hours",
     "of the public library during the winter months.", "Budget: 12,400 for staff and 3,150 for heating."],
    ["Delivery note 4471", "Item           Qty     Price", "Blue folders     12      4.50",
     "Desk lamps        3     29.90", "Total due within thirty days."],
    ["Dear Ms. Carter,", "Thank you for your letter of the fourth of May.", "We have reviewed the contract",
     "and will send our answer next week.", "Yours sincerely, J. Morgan"],
]
STYLES = ["clean", "noisy", "rotated", "scanned"]
REAL = Path(__file__).resolve().parent / "data" / "perception"
REAL_PAGES = ["huckleberry-finn-1884-p29.jpg"]
REAL_RECORDINGS = ["jfk-inaugural-1961.wav"]


_CONTRACTIONS = {"i'm": "i am", "it's": "it is", "don't": "do not", "we're": "we are", "you're": "you are",
                 "that's": "that is", "can't": "cannot", "won't": "will not", "i've": "i have"}


def normalise_words(text: str) -> list[str]:
    """Lower case, punctuation dropped, common contractions expanded (as Whisper's normaliser does)."""
    plain = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("’", "'").replace("-", " "))
    return " ".join(_CONTRACTIONS.get(word, word) for word in plain.split()).split()


def edit_distance(a: list | str, b: list | str) -> int:
    previous = list(range(len(b) + 1))
    for i, left in enumerate(a, start=1):
        current = [i]
        for j, right in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word errors, reference words)."""
    ref = normalise_words(reference)
    return edit_distance(ref, normalise_words(hypothesis)), len(ref)


def cer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(character errors, reference characters), whitespace runs counted as one space."""
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    return edit_distance(ref, hyp), len(ref)


def real_items(names: list[str]) -> list[tuple[str, str, bytes]]:
    """(name, hand-made label, file bytes) of the shipped public-domain files ``names``."""
    return [(name, (REAL / name).with_suffix(".txt").read_text(encoding="utf-8"), (REAL / name).read_bytes())
            for name in names]


_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "-", "–": "-"})


def page_text(text: str) -> str:
    """A real page's text with its typesetting made plain: curly quotes straight (and a doubled
    single quote as a double one), every dash a hyphen, no space before ``; : ? ! , .``."""
    plain = text.translate(_QUOTES).replace("''", '"').replace("``", '"')
    return re.sub(r"\s+([;:?!,.])", r"\1", plain)


def cer_page(reference: str, hypothesis: str) -> tuple[int, int]:
    """``cer`` after ``page_text`` on both sides (for the scanned page, set in 1884 type)."""
    return cer(page_text(reference), page_text(hypothesis))


def flite_wav(text: str, voice: str, speed: float, path: Path) -> Path:
    """``text`` spoken by CMU Flite (Debian ``flite``, a benchmark-only voice set)."""
    subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={1 / speed:.3f}", "-t", text, "-o",
                    str(path)], check=True)
    return path


def espeak_wav(text: str, voice: str, speed: float, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(round(175 * speed)), "-w", str(path), text], check=True)
    return path


def render_page(lines: list[str], style: str, seed: int = 0) -> bytes:
    """A PNG page of ``lines`` in one of ``STYLES``."""
    rng = random.Random(seed)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 28)
    image = Image.new("L", (1200, 120 + 56 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((60, 50 + 56 * n), line, fill=0, font=font)
    if style in ("noisy", "scanned"):
        pixels = np.asarray(image, dtype=np.float32)
        pixels += np.random.default_rng(seed).normal(0, 28 if style == "noisy" else 18, pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if style in ("rotated", "scanned"):
        image = image.rotate(rng.uniform(2.0, 4.0) * rng.choice([-1, 1]), expand=True, fillcolor=255,
                             resample=Image.BICUBIC)
    if style == "scanned":
        image = image.filter(ImageFilter.GaussianBlur(0.8)).point(lambda v: int(40 + v * 0.75))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=45)
        image = Image.open(io.BytesIO(buffer.getvalue()))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()
