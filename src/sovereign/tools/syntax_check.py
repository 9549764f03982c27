"""Whether a file's text still parses as what its name says (Python, JSON, TOML), checked after
a write so an agent that breaks a file hears it at once (parsing only: nothing is run)."""

from __future__ import annotations

import json
import tomllib
from pathlib import PurePath

__all__ = ["SYNTAX_WARNING", "syntax_problem"]

SYNTAX_WARNING = "warning: the file does not parse"
"""How a write's result starts its note on a file left unparseable (the runtime looks for it)."""


def syntax_problem(name: str, text: str) -> str | None:
    """Why ``text`` does not parse as the kind of file ``name`` is, or None (also for kinds not
    checked)."""
    suffix = PurePath(name).suffix.lower()
    try:
        if suffix == ".py":
            compile(text, name, "exec", dont_inherit=True)
        elif suffix == ".json":
            json.loads(text)
        elif suffix == ".toml":
            tomllib.loads(text)
        else:
            return None
    except SyntaxError as exc:
        where = f" (line {exc.lineno}: {(exc.text or '').strip()[:80]})" if exc.lineno else ""
        return f"{type(exc).__name__}: {exc.msg}{where}"
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
