"""Web console first paint on loopback, in Debian's headless chromium (Playwright).

sovereign: ``GET /`` from the real app and server stack (``tests/servers/fast_serve.py``: the
echoing TestModel double, so no weights load), then signed in (the key in session storage) the
time until the nav fragment — the first authenticated answer — is on screen. Peer, same run: the
very same page and assets saved as static files and served by Python's ``http.server``. Each
load is a fresh browser context (empty cache); medians of ``--runs`` loads.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_console.py --runs 15
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import API_KEY, REPO, free_port, make_home, median  # noqa: E402

PAINT = """() => { const p = performance.getEntriesByType('paint');
  const first = p.find(e => e.name === 'first-paint') || p[0]; return first ? first.startTime : null }"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def first_paint(browser, url: str, signed_in: bool = False) -> tuple[float, float | None]:
    """(first paint ms, ms until the signed-in nav is shown or None) of one cold load."""
    context = browser.new_context()
    if signed_in:
        context.add_init_script(f"sessionStorage.setItem('sovereign.apiKey', {API_KEY!r})")
    page = context.new_page()
    page.goto(url)
    page.wait_for_load_state("load")
    ready = None
    if signed_in:
        page.wait_for_selector("#who")
        ready = page.evaluate("performance.now()")
    paint = page.wait_for_function(PAINT).json_value()  # the entry lands just after the paint
    context.close()
    return paint, ready


@contextmanager
def console_server():
    """``tests/servers/fast_serve.py`` on a free loopback port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "SOVEREIGN_HOME": str(make_home()), "SOVEREIGN_API_KEY": API_KEY,
           "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "servers" / "fast_serve.py"), str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the console server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def static_copy(url: str) -> Path:
    """The console's ``/`` and its assets as plain files (the peer serves these)."""
    root = Path(tempfile.mkdtemp(prefix="console-static-"))
    (root / "index.html").write_text(httpx.get(url + "/").text)
    static = REPO / "src" / "sovereign" / "server" / "console" / "static"
    shutil.copytree(static, root / "console" / "static")
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    with console_server() as url, sync_playwright() as playwright:
        root = static_copy(url)
        peer = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
        threading.Thread(target=peer.serve_forever, daemon=True).start()
        peer_url = f"http://127.0.0.1:{peer.server_address[1]}/index.html"
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox"] if os.geteuid() == 0 else [])
        ours, theirs, ready = [], [], []
        for _ in range(args.runs):
            theirs.append(first_paint(browser, peer_url)[0])
            ours.append(first_paint(browser, url + "/")[0])
            ready.append(first_paint(browser, url + "/console/spend", signed_in=True)[1])
        browser.close()
        peer.shutdown()
    print(f"runs: {args.runs}, load average {os.getloadavg()[0]:.1f}")
    print(f"first paint, sovereign GET /         : median {median(ours):7.1f} ms (max {max(ours):.1f})")
    print(f"first paint, static http.server peer : median {median(theirs):7.1f} ms (max {max(theirs):.1f})")
    print(f"ratio sovereign / peer               : {median(ours) / median(theirs):.2f}")
    print(f"signed in, nav shown (/console/spend): median {median(ready):7.1f} ms (max {max(ready):.1f})")


if __name__ == "__main__":
    main()
