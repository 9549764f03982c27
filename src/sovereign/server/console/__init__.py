"""The web console served at ``/``: server-rendered pages (Jinja2) with htmx, every asset in the
package (no network). The vendored files are pinned by version and SHA-256 in ``VENDORED``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC", "TEMPLATES", "VENDORED"]

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

# file under static/ -> (package@version it came from, SHA-256 of the file as shipped).
# From `npm pack htmx.org@2.0.11` (dist/htmx.min.js; npm shasum a85363c4c5af94cd634df04c4b83d06dd0e91aa7).
VENDORED = {
    "htmx-2.0.11.min.js": ("htmx.org@2.0.11", "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"),
}
