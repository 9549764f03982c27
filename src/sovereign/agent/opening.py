"""The opening move: before the model's first turn, the runtime reads what the task points at.

Small models often answer a question about a file from memory, or spend their first turns
finding it. So when a fresh run's task names workspace files ("sales.csv", "app/money.py"), the
runtime makes the first move itself: it reads them (an image with ``read_image`` and a recording
with ``transcribe`` when the agent has them, any other file with ``read_file``); when the task
names a folder ("the archive folder"), it lists it; when it asks about the workspace's files
without naming one, it lists the workspace. The move is an ordinary turn of the run, written as
the agent's mode writes it (a Python block that prints, or JSON ``read_file`` calls), run on the
same governed path as any other (visibility, injection guard, audit, budget), and marked as the
runtime's in the trace. In code mode the model sees only what the block printed, as material
given with the task (a small model shown "its own" print block tends to write it again instead
of moving on).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson

from sovereign.agent.answer_check import in_workspace, named_files
from sovereign.agent.steps import OPENING_MODEL, ModelCallStep
from sovereign.kernel.messages import ToolCall

__all__ = ["OPENING_MODEL", "opening_turn"]

MAX_FILES = 4
"""At most this many named files are read (the rest the model reads itself)."""
SMALL_FILES, SMALL_BYTES = 8, 3000
"""A folder the task points at with at most this many files, this short together, is read whole
rather than listed."""
_SKIP = frozenset({"__pycache__", "node_modules"})
_WORD = re.compile(r"[A-Za-z0-9_][\w.-]*")
_ABOUT_FILES = re.compile(r"\b(files?|folders?|director(?:y|ies)|workspace|documents?|docs)\b", re.IGNORECASE)
_READERS = (
    ("read_image", frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})),
    ("transcribe", frozenset({".wav", ".mp3", ".ogg", ".opus", ".flac", ".m4a", ".webm", ".aac"})),
)
"""Files read by a perception tool rather than as text (when the agent is offered that tool)."""


def reader_of(name: str, tool_names: set[str]) -> str | None:
    """The tool that reads the file ``name`` for the model: ``read_image`` for an image and
    ``transcribe`` for a recording when offered, else ``read_file`` (None when not offered:
    an image or recording is never read as text)."""
    suffix = Path(name).suffix.lower()
    for tool_name, suffixes in _READERS:
        if suffix in suffixes:
            return tool_name if tool_name in tool_names else None
    return "read_file" if "read_file" in tool_names else None


def opening_turn(task: str, workspace: Path | None, mode: str, tool_names: set[str]) -> ModelCallStep | None:
    """The runtime's first turn for ``task``, or None when the task points at nothing to read
    (or the agent cannot read files)."""
    if workspace is None or not workspace.is_dir():
        return None
    root = Path(os.path.realpath(workspace))
    named = named_files(task, root)
    readers = _readers(named, tool_names, MAX_FILES)
    listing = None
    if not named and "list_files" in tool_names and "read_file" in tool_names:
        listing = _named_folder(task, root)
        if listing is None and _ABOUT_FILES.search(task) and any(root.iterdir()):
            listing = "."
    if listing is not None:
        small = _small_folder(root, listing)
        if small is not None:  # a few short files: their content answers more than their names
            readers, listing = _readers(small, tool_names), None
    if not readers and listing is None:
        return None
    if mode == "code":
        return ModelCallStep(model=OPENING_MODEL, content=_code(readers, listing))
    calls = [ToolCall(name=reader, arguments=_json({"path": name})) for name, reader in readers.items()]
    if listing is not None:
        calls.append(ToolCall(name="list_files", arguments=_json({"path": listing, "recursive": True})))
    return ModelCallStep(model=OPENING_MODEL, tool_calls=calls, finish_reason="tool_calls")


def _readers(names: list[str], tool_names: set[str], limit: int | None = None) -> dict[str, str]:
    """Each of ``names`` that an offered tool can read, with that tool (the first ``limit``)."""
    found = {name: reader for name in names if (reader := reader_of(name, tool_names)) is not None}
    return dict(list(found.items())[:limit])


def _code(readers: dict[str, str], listing: str | None) -> str:
    """The opening block (``readers``: each file and the tool that reads it). It leaves what it
    read in a variable (``OPENING_VARIABLES``): blocks carry their variables over, and small
    models often go on as if the text were in one."""
    files = list(readers)
    if len(files) == 1:
        body = f"content = {readers[files[0]]}({files[0]!r})\nprint(content)"
    elif files and set(readers.values()) == {"read_file"}:
        body = (f"contents = {{path: read_file(path) for path in {files!r}}}\n"
                "for path, text in contents.items():\n    print(f'=== {path} ===')\n    print(text)")
    elif files:
        pairs = ", ".join(f"{name!r}: {reader}({name!r})" for name, reader in readers.items())
        body = (f"contents = {{{pairs}}}\n"
                "for path, text in contents.items():\n    print(f'=== {path} ===')\n    print(text)")
    else:
        body = f"names = list_files({listing!r}, recursive=True)\nprint('\\n'.join(names))"
    return f"```python\n{body}\n```"


def _named_folder(task: str, root: Path) -> str | None:
    """The first workspace folder the task names by a bare word ("the archive folder")."""
    for match in _WORD.finditer(task):
        word = match.group(0).rstrip(".")
        if word and in_workspace(root, word, folder=True):
            return word
    return None


def _small_folder(root: Path, folder: str) -> list[str] | None:
    """Every file under ``folder`` when there are at most ``SMALL_FILES`` and they are short
    (``SMALL_BYTES`` together); None otherwise. The walk stops as soon as either is exceeded, so
    a large workspace costs no more than a small one."""
    found: list[str] = []
    total = 0
    for directory, subfolders, names in os.walk(root / folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in _SKIP]
        for name in names:
            path = Path(directory) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            found.append(path.relative_to(root).as_posix())
            total += path.stat().st_size
            if len(found) > SMALL_FILES or total > SMALL_BYTES:
                return None
    return sorted(found) or None


def _json(value: dict) -> str:
    return orjson.dumps(value).decode()
