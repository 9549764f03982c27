"""OCR: character error rate and time per page on pages rendered here (clean, noisy, rotated,
scanned-looking), tesseract vs RapidOCR through sovereign's governed path, and RapidOCR called
directly (the peer for the governed path's overhead), in one run.

The set: ``PARAGRAPHS`` (3 short documents: minutes, a delivery note with a table, a letter) x
``STYLES`` (4) = 12 pages, rendered with Pillow in DejaVu Sans. Times are medians of ``--runs``.
Then, reported apart, the real scanned public-domain page shipped in ``data/perception/`` (a
page of *Huckleberry Finn*, 1884, with an illustration), by both engines.

    python benchmarks/bench_ocr.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_home  # noqa: E402
from _perception_data import PARAGRAPHS, REAL_PAGES, STYLES, cer, cer_page, real_items, render_page  # noqa: E402

from sovereign.config import load_settings  # noqa: E402
from sovereign.perception.ocr import load_image  # noqa: E402
from sovereign.services import Services  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--show", action="store_true", help="print what each engine read on pages with errors")
    parser.add_argument("--real-only", action="store_true", help="only the real scanned page")
    args = parser.parse_args()
    services = Services.open(load_settings(make_home()), progress=False)
    governed = services.governed_perception(services.keys.local_principal())
    if args.real_only:
        real_pages(governed, args.show)
        services.close()
        return
    _, rapid = services.perception.engine("rapidocr", "ocr")
    pages = [(style, n, "\n".join(lines), render_page(lines, style, seed=n))
             for n, lines in enumerate(PARAGRAPHS) for style in STYLES]
    names = ("sovereign rapidocr", "sovereign tesseract", "rapidocr direct")
    errors = {name: {style: [0, 0] for style in STYLES} for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for run in range(args.runs):
        spent = dict.fromkeys(names, 0.0)
        for style, n, reference, data in pages:
            for name in names:
                started = time.perf_counter()
                if name == "rapidocr direct":  # the engine alone: RapidOCR on the decoded page
                    output = rapid._engine(np.asarray(load_image(data, max_pixels=10**8))[:, :, ::-1].copy())
                    text = "\n".join(output.txts or ())
                else:
                    text = governed.read_image_now(data, model=name.split()[1]).text
                spent[name] += time.perf_counter() - started
                if run == 0:
                    wrong, total = cer(reference, text)
                    errors[name][style][0] += wrong
                    errors[name][style][1] += total
                    if args.show and wrong and name != "rapidocr direct":
                        print(f"[{name} {style} {n}] {wrong} errors:\n{text}\n")
        for name in names:
            times[name].append(spent[name])
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{len(pages)} pages ({len(PARAGRAPHS)} documents x {', '.join(STYLES)}); {args.runs} runs (medians)")
    header = "  engine                " + "".join(f"{style:>10s}" for style in STYLES) + "   all CER   s/page"
    print(header)
    for name in names:
        cells = "".join(f"{100 * e[0] / e[1]:9.2f}%" for e in errors[name].values())
        wrong = sum(e[0] for e in errors[name].values())
        total = sum(e[1] for e in errors[name].values())
        print(f"  {name:22s}{cells}  {100 * wrong / total:7.2f}%  {statistics.median(times[name]) / len(pages):6.2f}")
    print("  (rapidocr direct joins RapidOCR's lines with newlines; its CER is not layout-aware, only its time is"
          " the peer)")
    ratio = statistics.median(times["sovereign rapidocr"]) / statistics.median(times["rapidocr direct"])
    print(f"  overhead: sovereign rapidocr / rapidocr direct = {ratio:.3f}")
    real_pages(governed, args.show)
    services.close()


def real_pages(governed, show: bool) -> None:
    """CER on the real scanned page(s), each engine, one run (the page is read as it is)."""
    print("real scanned public-domain page (data/perception/; quotes, dashes and spaces before punctuation"
          " made plain):")
    for name, reference, data in real_items(REAL_PAGES):
        for engine in ("rapidocr", "tesseract"):
            started = time.perf_counter()
            text = governed.read_image_now(data, model=engine).text
            seconds = time.perf_counter() - started
            wrong, total = cer_page(reference, text)
            print(f"  {name} {engine:10s} CER {100 * wrong / total:6.2f}%  ({wrong} of {total} characters)"
                  f"  {seconds:6.2f} s")
            if show:
                print(text + "\n")


if __name__ == "__main__":
    main()
