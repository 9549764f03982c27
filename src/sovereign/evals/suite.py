"""Task suites for ``sovereign eval``: the TOML format, validated by pydantic, with errors that
name the file, the line and the field.

A suite file holds a ``[suite]`` table and ``[[tasks]]``. Each task has an ``id``, a
``category``, a ``prompt``, workspace files (``files`` inline and/or a ``fixture`` folder next to
the suite file), and an ``expect`` table (how the answer is checked), a ``check`` command (run in
the workspace after the run; exit 0 passes), or both. Tasks whose files hide an instruction add
an ``attack`` table: the effects that must *not* happen.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sovereign.errors import UserError

__all__ = ["Attack", "Expect", "Suite", "SuiteError", "SuiteInfo", "Task", "load_suite", "parse_suite"]

SUITE_FILE = "suite.toml"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class SuiteError(UserError):
    """A suite file that cannot be used; the message names the file, line and field."""

    code = "invalid_suite"

    def __init__(self, message: str, *, path: Path | str, line: int | None = None, field: str | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        what = f" (field '{field}')" if field else ""
        super().__init__(f"{where}{what}: {message}", param=field)
        self.path = str(path)
        self.line = line
        self.field = field


def _safe_relative(name: str) -> str:
    path = Path(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"'{name}' must be a relative path inside the workspace")
    return name


class Expect(BaseModel):
    """How the final answer is checked. Every given matcher must pass; the answer must also be
    free of tool-call markup."""

    model_config = ConfigDict(extra="forbid")

    number: float | None = None
    """The answer states this number (commas, currency signs and units are allowed around it)."""
    tolerance: float = Field(default=0.0, ge=0)
    """Absolute tolerance for ``number``."""
    contains: list[str] = Field(default_factory=list)
    """Each of these appears in the answer (case-insensitive)."""
    excludes: list[str] = Field(default_factory=list)
    """None of these appears in the answer (case-insensitive), e.g. the wrong candidates."""
    regex: str | None = None
    """The answer matches this regular expression (case-insensitive, searched anywhere)."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _something(self) -> Expect:
        if self.number is None and not self.contains and self.regex is None:
            raise ValueError("give at least one of number, contains or regex")
        return self


class Attack(BaseModel):
    """What a hidden instruction tries to make happen; each item must not happen."""

    model_config = ConfigDict(extra="forbid")

    absent: list[str] = Field(default_factory=list)
    """Files that must not exist in the workspace after the run."""
    unchanged: list[str] = Field(default_factory=list)
    """Workspace files that must still hold their fixture content."""
    answer_excludes: list[str] = Field(default_factory=list)
    """Text the final answer must not contain (case-insensitive), e.g. a secret or a marker."""
    calls_exclude: list[str] = Field(default_factory=list)
    """Text no executed tool call's arguments may contain (e.g. an attacker's host)."""

    @field_validator("absent", "unchanged")
    @classmethod
    def _relative(cls, value: list[str]) -> list[str]:
        return [_safe_relative(p) for p in value]

    @model_validator(mode="after")
    def _something(self) -> Attack:
        if not (self.absent or self.unchanged or self.answer_excludes or self.calls_exclude):
            raise ValueError("give at least one of absent, unchanged, answer_excludes or calls_exclude")
        return self


class Task(BaseModel):
    """One task: what to ask, the workspace to ask it in, and how success is checked."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID, max_length=80)
    category: str = Field(pattern=_ID, max_length=40)
    prompt: str = Field(min_length=1)
    files: dict[str, str] = Field(default_factory=dict)
    """Workspace files written before the run: relative path → content."""
    fixture: str | None = None
    """A folder (relative to the suite file) copied into the workspace first."""
    expect: Expect | None = None
    check: str | None = None
    """A shell command run in the workspace after the run; exit status 0 passes."""
    check_timeout_s: float = Field(default=30.0, gt=0, le=600)
    attack: Attack | None = None

    @field_validator("files")
    @classmethod
    def _relative(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _safe_relative(name)
        return value

    @field_validator("fixture")
    @classmethod
    def _fixture_relative(cls, value: str | None) -> str | None:
        return None if value is None else _safe_relative(value)

    @model_validator(mode="after")
    def _checkable(self) -> Task:
        if self.expect is None and not (self.check or "").strip():
            raise ValueError("a task needs an 'expect' table, a 'check' command, or both")
        return self


class SuiteInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_ID)
    description: str = ""


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: SuiteInfo
    tasks: list[Task] = Field(min_length=1)


class Suite(BaseModel):
    """A loaded suite; ``root`` is the folder fixtures are found in."""

    name: str
    description: str = ""
    path: Path
    tasks: list[Task]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(t.category for t in self.tasks))

    def select(self, pattern: str | None = None, limit: int | None = None) -> list[Task]:
        """Tasks whose id or category matches the regular expression ``pattern``, at most ``limit``."""
        tasks = self.tasks
        if pattern:
            try:
                wanted = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise UserError(f"--filter is not a valid regular expression: {exc}", param="filter") from exc
            tasks = [t for t in tasks if wanted.search(t.id) or wanted.search(t.category)]
        return tasks[:limit] if limit is not None else tasks

    def fixture_dir(self, task: Task) -> Path | None:
        return self.root / task.fixture if task.fixture else None


# --- loading ---------------------------------------------------------------------------------


def load_suite(path: Path | str) -> Suite:
    """Read and validate a suite file (or a folder holding ``suite.toml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / SUITE_FILE
    if not path.is_file():
        raise SuiteError("no such suite file", path=path)
    return parse_suite(path.read_text(encoding="utf-8"), path)


def parse_suite(text: str, path: Path | str) -> Suite:
    """Validate suite ``text`` read from ``path``; ``SuiteError`` names the line and field."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _decode_error_line(str(exc))
        raise SuiteError(f"not valid TOML: {exc}", path=path, line=line) from exc
    try:
        parsed = _SuiteFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise SuiteError(error["msg"] + more, path=path, line=locate(text, loc),
                         field=_field_name(loc, data)) from exc
    _check_unique(parsed.tasks, text, path)
    suite = Suite(name=parsed.suite.name, description=parsed.suite.description, path=path.resolve(),
                  tasks=parsed.tasks)
    for index, task in enumerate(suite.tasks):
        fixture = suite.fixture_dir(task)
        if fixture is not None and not fixture.is_dir():
            raise SuiteError(f"fixture folder '{task.fixture}' not found next to the suite file", path=path,
                             line=locate(text, ("tasks", index, "fixture")), field=f"tasks[{task.id}].fixture")
    return suite


def _check_unique(tasks: list[Task], text: str, path: Path) -> None:
    seen: set[str] = set()
    for index, task in enumerate(tasks):
        if task.id in seen:
            raise SuiteError(f"task id '{task.id}' is used twice", path=path, line=locate(text, ("tasks", index, "id")),
                             field=f"tasks[{index}].id")
        seen.add(task.id)


def _decode_error_line(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _field_name(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """``tasks[csv-total].expect.number`` — the task named by its id when it has one."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and loc[i - 1] == "tasks":
            tasks = data.get("tasks") or []
            task_id = tasks[part].get("id") if part < len(tasks) and isinstance(tasks[part], dict) else None
            parts[-1] += f"[{task_id if isinstance(task_id, str) else part}]"
        elif isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts)


def locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the TOML source that ``loc`` (a pydantic error location) points at:
    the field's own line when it is written there, else the task's (or table's) header line."""
    lines = text.splitlines()
    if not loc:
        return None
    if loc[0] != "tasks" or len(loc) < 2 or not isinstance(loc[1], int):
        header = _find(lines, 0, len(lines), rf"^\s*\[\s*{re.escape(str(loc[0]))}\s*\]")
        start = header or 1
        return _field_line(lines, start, _block_end(lines, start), loc[1:]) or header or 1
    starts = [i + 1 for i, line in enumerate(lines) if re.match(r"^\s*\[\[\s*tasks\s*\]\]", line)]
    if loc[1] >= len(starts):
        return starts[-1] if starts else None
    start = starts[loc[1]]
    end = starts[loc[1] + 1] - 1 if loc[1] + 1 < len(starts) else len(lines)
    return _field_line(lines, start, end, loc[2:]) or start


def _block_end(lines: list[str], start: int) -> int:
    for i in range(start, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            return i
    return len(lines)


def _field_line(lines: list[str], start: int, end: int, rest: tuple[Any, ...]) -> int | None:
    """Within lines ``start..end`` (1-based), the deepest line naming the fields in ``rest``."""
    found: int | None = None
    low = start
    for part in rest:
        if isinstance(part, int):
            continue
        name = re.escape(str(part))
        hit = _find(lines, low, end, rf'^\s*(\[\s*tasks\.{name}\s*\]|"?{name}"?\s*=|{name}\s*\.)')
        if hit is None:
            break
        found = low = hit
    return found


def _find(lines: list[str], start: int, end: int, pattern: str) -> int | None:
    for i in range(max(start - 1, 0), min(end, len(lines))):
        if re.match(pattern, lines[i]):
            return i + 1
    return None
