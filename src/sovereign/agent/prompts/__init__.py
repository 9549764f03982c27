"""The agent runtime's prompts, kept short for small models, loaded from the ``.txt`` files here."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["fence", "prompt"]


@cache
def prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt`` (trailing whitespace stripped)."""
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8").rstrip()


def fence(text: str) -> str:
    """The fence line to show ``text`` between: ```, or ~~~~ when the text holds ``` itself. A
    small model shown file text that runs straight into the next sentence takes that sentence
    for the file's last line."""
    return "~~~~" if "```" in text else "```"
