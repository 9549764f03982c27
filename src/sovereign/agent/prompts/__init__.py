"""The agent runtime's prompts, kept short for small models, loaded from the ``.txt`` files here."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["prompt"]


@cache
def prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt`` (trailing whitespace stripped)."""
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8").rstrip()
