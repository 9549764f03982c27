"""The agent's workspace folder: list, read, write and search files, with no way out of it.

Every path an agent names is taken relative to the workspace root. A path is refused when it
leaves the root: absolute paths elsewhere, ``..`` components that climb out, and symlinks
(anywhere along the path) whose target lies outside. Writes never follow a symlink.

Regular-expression search uses RE2 (``google-re2``): matching takes time linear in the input,
so no pattern (``(a+)+$`` and the like) can stall the server; RE2 has no backreferences or
lookaround, and such a pattern gets a ``ToolError`` saying so.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import re2

from sovereign.tools.base import ToolError
from sovereign.tools.syntax_check import BLANK_LINE_NOTE, SYNTAX_WARNING, stray_blank_line, syntax_problem

__all__ = ["Workspace", "WorkspaceEscapeError"]

_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}


class WorkspaceEscapeError(ToolError):
    """A path would leave the agent's workspace."""

    code = "workspace_escape"


@dataclass(frozen=True)
class Workspace:
    """A folder an agent may read and write; ``root`` is created if missing."""

    root: Path
    max_read_bytes: int = 256_000
    max_write_bytes: int = 4_000_000

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        object.__setattr__(self, "root", Path(os.path.realpath(self.root)))

    # --- confinement ----------------------------------------------------------------------

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The real path of ``path`` inside the workspace; raises ``WorkspaceEscapeError``."""
        text = os.fspath(path)
        if "\x00" in text:
            raise WorkspaceEscapeError("path contains a NUL byte")
        candidate = Path(text)
        if candidate.is_absolute():
            absolute = candidate
        else:
            absolute = self.root / candidate
        # realpath follows every symlink that exists, so a link pointing outside shows up here.
        real = Path(os.path.realpath(absolute))
        if real != self.root and not real.is_relative_to(self.root):
            raise WorkspaceEscapeError(f"path '{text}' is outside the workspace")
        return real

    def relative(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return rel or "."

    # --- operations -----------------------------------------------------------------------

    def list(self, path: str = ".", *, recursive: bool = False, limit: int = 1000) -> list[str]:
        """Entries under ``path``, directories with a trailing ``/``."""
        base = self.resolve(path)
        if not base.exists():
            raise ToolError(f"'{path}' does not exist in the workspace")
        if not base.is_dir():
            raise ToolError(f"'{path}' is a file, not a folder: read it with read_file('{path}')")
        entries: list[str] = []
        for entry in self._walk(base) if recursive else sorted(base.iterdir()):
            rel = entry.relative_to(self.root).as_posix()
            entries.append(rel + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
            if len(entries) >= limit:
                entries.append(f"... (stopped at {limit} entries)")
                break
        return entries

    def _walk(self, base: Path):  # type: ignore[no-untyped-def]
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            here = Path(dirpath)
            for name in dirnames:
                yield here / name
            for name in sorted(filenames):
                yield here / name

    def read(self, path: str, *, offset: int = 0, max_bytes: int | None = None) -> str:
        """Text of a file (UTF-8, undecodable bytes replaced), at most ``max_bytes`` of it."""
        target = self.resolve(path)
        if target.is_dir():
            raise ToolError(f"'{path}' is a folder, not a file: list it with list_files('{path}')")
        if not target.is_file():
            raise ToolError(f"'{path}' is not a file in the workspace")
        limit = min(max_bytes or self.max_read_bytes, self.max_read_bytes)
        with open(target, "rb") as handle:
            handle.seek(max(offset, 0))
            data = handle.read(limit + 1)
        text = data[:limit].decode("utf-8", errors="replace")
        if len(data) > limit:
            text += f"\n... (truncated at {limit} bytes; read on with offset={offset + limit})"
        return text

    def write(self, path: str, content: str, *, append: bool = False) -> str:
        """Write (or append) UTF-8 text; parent folders are created. Returns a summary."""
        data = content.encode("utf-8")
        if len(data) > self.max_write_bytes:
            raise ToolError(f"content is {len(data)} bytes; the limit is {self.max_write_bytes}")
        target = self.resolve(path)
        if target == self.root or target.is_dir():
            raise ToolError(f"'{path}' is a directory")
        parent = target.parent
        parent.mkdir(parents=True, exist_ok=True)
        # Re-check after mkdir: a racing symlink swap must not take the write outside.
        if Path(os.path.realpath(parent)) != parent:
            raise WorkspaceEscapeError(f"path '{path}' is outside the workspace")
        old = self._small_text(target)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as exc:
            raise ToolError(f"cannot write '{path}': {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        name = self.relative(target)
        summary = f"{'appended' if append else 'wrote'} {len(data)} bytes to {name}"
        whole = target.read_text(encoding="utf-8", errors="replace") if append else content
        blank = stray_blank_line(old, whole)
        if blank is not None:
            summary += "; " + BLANK_LINE_NOTE.format(line=blank)
        problem = syntax_problem(name, whole)
        return summary if problem is None else f"{summary}; {SYNTAX_WARNING}: {problem}"

    def _small_text(self, target: Path) -> str | None:
        """The text of an existing file small enough to compare with what is written over it."""
        try:
            if target.is_symlink() or not target.is_file() or target.stat().st_size > self.max_write_bytes:
                return None
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def search(
        self, pattern: str, path: str = ".", *, glob: str = "*", regex: bool = False, limit: int = 100
    ) -> list[str]:
        """Lines matching ``pattern`` in files under ``path``, as ``file:line: text``."""
        base = self.resolve(path)
        matcher = _matcher(pattern, regex)
        files = [base] if base.is_file() else [p for p in self._walk(base) if p.is_file()]
        hits: list[str] = []
        for file in files:
            if file.is_symlink() or not fnmatch.fnmatch(file.name, glob):
                continue
            try:
                with open(file, encoding="utf-8", errors="strict") as handle:
                    for number, line in enumerate(handle, start=1):
                        if matcher(line.rstrip("\r\n")):
                            hits.append(f"{self.relative(file)}:{number}: {line.rstrip()[:300]}")
                            if len(hits) >= limit:
                                return hits + [f"... (stopped at {limit} matches)"]
            except (UnicodeDecodeError, OSError):
                continue  # binary or unreadable files are not searched
        return hits


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors become ToolError, not stderr noise


def _matcher(pattern: str, regex: bool) -> Callable[[str], bool]:
    """A line test: substring, or an RE2 expression (linear time; ``ToolError`` when invalid)."""
    if not regex:
        return lambda line: pattern in line
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ToolError(f"unsupported or invalid regular expression ({detail}): search_files uses RE2 syntax, "
                        "which runs in linear time and has no backreferences (\\1) or lookaround ((?=...), "
                        "(?<=...))") from exc
    return lambda line: compiled.search(line) is not None
