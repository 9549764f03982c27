"""The built-in toolset: workspace files, sandboxed shell and Python, calculator, HTTP fetch.

File and shell tools work in the calling run's workspace (``ToolContext.workspace``) when it has
one, else in the workspace given to the factory (default ``$SOVEREIGN_HOME/workspace``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovereign.config import resolve_home
from sovereign.governance.egress import EgressGate
from sovereign.tools.base import Tool, ToolContext, ToolError, tool
from sovereign.tools.calculator import calculator_tool
from sovereign.tools.http import http_tool
from sovereign.tools.sandbox import Sandbox, SandboxLimits, python_executable
from sovereign.tools.workspace import Workspace

__all__ = ["builtin_tools", "workspace_tools", "sandbox_tools"]


def _pick(ctx: ToolContext | None, default: Workspace) -> Workspace:
    if ctx is not None and ctx.workspace is not None and Path(ctx.workspace) != default.root:
        return Workspace(Path(ctx.workspace), default.max_read_bytes, default.max_write_bytes)
    return default


def workspace_tools(default: Workspace) -> list[Tool]:
    """``list_files``, ``read_file``, ``search_files`` and (risky) ``write_file``."""

    @tool
    def list_files(ctx: ToolContext, path: str = ".", recursive: bool = False) -> str:
        """List the files and folders at a path in the workspace (folders end with '/')."""
        entries = _pick(ctx, default).list(path, recursive=recursive)
        return "\n".join(entries) if entries else "(empty)"

    @tool
    def read_file(ctx: ToolContext, path: str, offset: int = 0, max_bytes: int = 100_000) -> str:
        """Read a text file from the workspace, from byte ``offset``, at most ``max_bytes``."""
        return _pick(ctx, default).read(path, offset=offset, max_bytes=max_bytes)

    @tool(risky=True, needs_approval=True)
    def write_file(ctx: ToolContext, path: str, content: str, append: bool = False) -> str:
        """Write text to a file in the workspace (replacing it, or appending); folders are created."""
        return _pick(ctx, default).write(path, content, append=append)

    @tool
    def search_files(ctx: ToolContext, pattern: str, path: str = ".", glob: str = "*", regex: bool = False) -> str:
        """Search the text files under a workspace path for lines containing ``pattern``.

        ``glob`` filters file names (e.g. "*.py"); ``regex`` treats the pattern as a regular
        expression. Returns ``file:line: text`` lines.
        """
        hits = _pick(ctx, default).search(pattern, path, glob=glob, regex=regex)
        return "\n".join(hits) if hits else "no matches"

    return [list_files, read_file, write_file, search_files]


def sandbox_tools(default: Workspace, limits: SandboxLimits) -> list[Tool]:
    """``run_shell`` and ``run_python``: each call runs in a fresh sandbox on the workspace."""

    def sandbox(ctx: ToolContext | None) -> Sandbox:
        return Sandbox(_pick(ctx, default).root, limits)

    @tool(risky=True, needs_approval=True)
    async def run_shell(ctx: ToolContext, command: str) -> str:
        """Run a shell command (/bin/sh) in the sandboxed workspace, without network access.

        Returns the exit code, stdout and stderr; commands past the time limit are killed.
        """
        if not command.strip():
            raise ToolError("command is empty")
        return (await sandbox(ctx).run(["/bin/sh", "-c", command])).summary()

    @tool(risky=True, needs_approval=True)
    async def run_python(ctx: ToolContext, code: str) -> str:
        """Run Python code (standard library only) in the sandboxed workspace, without network access.

        Print what you want to see; returns the exit code, stdout and stderr.
        """
        if not code.strip():
            raise ToolError("code is empty")
        result = await sandbox(ctx).run([python_executable(), "-I", "-"], stdin=code.encode("utf-8"))
        return result.summary()

    return [run_shell, run_python]


def builtin_tools(
    workspace: Path | str | Workspace | None = None,
    services: Any = None,
    *,
    limits: SandboxLimits | None = None,
) -> list[Tool]:
    """Every built-in tool. HTTP goes through ``services.egress`` (an offline gate when
    ``services`` is None); the default workspace is ``$SOVEREIGN_HOME/workspace``."""
    if workspace is None:
        home = services.settings.home if services is not None else resolve_home()
        workspace = Path(home) / "workspace"
    space = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    egress: EgressGate = services.egress if services is not None else EgressGate()
    return [
        *workspace_tools(space),
        *sandbox_tools(space, limits or SandboxLimits()),
        calculator_tool(),
        http_tool(egress),
    ]
