"""The built-in toolset: workspace files, sandboxed shell and Python, calculator, HTTP fetch.

File and shell tools work in the calling run's workspace (``ToolContext.workspace``) when it has
one, else in the workspace given to the factory (default ``$SOVEREIGN_HOME/workspace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign.config import resolve_home
from sovereign.governance.egress import EgressGate
from sovereign.tools.base import Effects, Tool, ToolContext, ToolError, tool
from sovereign.tools.calculator import calculator_tool
from sovereign.tools.http import http_tool
from sovereign.tools.sandbox import Sandbox, SandboxLimits, isolation_mode, python_executable
from sovereign.tools.workspace import Workspace

__all__ = ["SandboxPolicy", "builtin_tools", "sandbox_policy", "sandbox_tools", "workspace_tools"]


def _pick(ctx: ToolContext | None, default: Workspace) -> Workspace:
    if ctx is not None and ctx.workspace is not None and Path(ctx.workspace) != default.root:
        return Workspace(Path(ctx.workspace), default.max_read_bytes, default.max_write_bytes)
    return default


_READS_FILES = Effects(reads_untrusted=True, source="file", reaches="workspace")
_WRITES_FILES = Effects(reads_untrusted=False, acts_on_world=True, needs_approval=True, reaches="workspace")


def workspace_tools(default: Workspace) -> list[Tool]:
    """``list_files``, ``read_file``, ``search_files`` (read files: untrusted) and ``write_file``
    (acts on the world, needs approval)."""

    @tool(effects=_READS_FILES)
    def list_files(ctx: ToolContext, path: str = ".", recursive: bool = False) -> str:
        """List the files and folders at a path in the workspace (folders end with '/')."""
        entries = _pick(ctx, default).list(path, recursive=recursive)
        return "\n".join(entries) if entries else "(empty)"

    @tool(effects=_READS_FILES)
    def read_file(ctx: ToolContext, path: str, offset: int = 0, max_bytes: int = 100_000) -> str:
        """Read a text file from the workspace, from byte ``offset``, at most ``max_bytes``."""
        return _pick(ctx, default).read(path, offset=offset, max_bytes=max_bytes)

    @tool(effects=_WRITES_FILES)
    def write_file(ctx: ToolContext, path: str, content: str, append: bool = False) -> str:
        """Write text to a file in the workspace (replacing it, or appending); folders are created."""
        return _pick(ctx, default).write(path, content, append=append)

    @tool(effects=_READS_FILES)
    def search_files(ctx: ToolContext, pattern: str, path: str = ".", glob: str = "*", regex: bool = False) -> str:
        """Search the text files under a workspace path for lines containing ``pattern``.

        ``glob`` filters file names (e.g. "*.py"); ``regex`` treats the pattern as a regular
        expression. Returns ``file:line: text`` lines.
        """
        hits = _pick(ctx, default).search(pattern, path, glob=glob, regex=regex)
        return "\n".join(hits) if hits else "no matches"

    return [list_files, read_file, write_file, search_files]


@dataclass(frozen=True)
class SandboxPolicy:
    """How shell and Python tools are sandboxed: limits, whether the weak mode (no isolation) is
    allowed, and the folders no command may read (the home: memory key, database)."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    allow_weak: bool = False
    protect: tuple[Path, ...] = ()


def sandbox_tools(default: Workspace, policy: SandboxPolicy) -> list[Tool]:
    """``run_shell`` and ``run_python``: each call runs in a fresh sandbox on the workspace.

    Both act on the world and need approval; their output is untrusted. Where no isolation is
    available (weak mode) they may also reach the network, and say so in their effects."""

    def sandbox(ctx: ToolContext | None) -> Sandbox:
        return Sandbox(_pick(ctx, default).root, policy.limits, allow_weak=policy.allow_weak, protect=policy.protect)

    effects = Effects(reads_untrusted=True, acts_on_world=True, needs_approval=True, reaches="workspace",
                      leaves_machine=isolation_mode() == "weak")

    @tool(effects=effects)
    async def run_shell(ctx: ToolContext, command: str) -> str:
        """Run a shell command (/bin/sh) in the sandboxed workspace, without network access.

        Returns the exit code, stdout and stderr; commands past the time limit are killed.
        """
        if not command.strip():
            raise ToolError("command is empty")
        return (await sandbox(ctx).run(["/bin/sh", "-c", command])).summary()

    @tool(effects=effects)
    async def run_python(ctx: ToolContext, code: str) -> str:
        """Run Python code (standard library only) in the sandboxed workspace, without network access.

        Print what you want to see; returns the exit code, stdout and stderr.
        """
        if not code.strip():
            raise ToolError("code is empty")
        result = await sandbox(ctx).run([python_executable(), "-I", "-"], stdin=code.encode("utf-8"))
        return result.summary()

    return [run_shell, run_python]


def sandbox_policy(services: Any = None, limits: SandboxLimits | None = None) -> SandboxPolicy:
    """The policy from ``[sandbox]`` in the services' settings (strict defaults without them)."""
    home = Path(services.settings.home) if services is not None else resolve_home()
    section = services.settings.sandbox if services is not None else None
    if section is None:
        return SandboxPolicy(limits=limits or SandboxLimits(), protect=(home,))
    chosen = limits or SandboxLimits(wall_seconds=section.wall_seconds, cpu_seconds=section.cpu_seconds,
                                     memory_mb=section.memory_mb, max_output_bytes=section.max_output_bytes,
                                     max_processes=section.max_processes)
    return SandboxPolicy(limits=chosen, allow_weak=section.allow_weak, protect=(home,))


def builtin_tools(
    workspace: Path | str | Workspace | None = None,
    services: Any = None,
    *,
    limits: SandboxLimits | None = None,
) -> list[Tool]:
    """Every built-in tool. HTTP goes through ``services.egress`` (an offline gate when
    ``services`` is None); the sandbox follows ``[sandbox]`` in the services' settings; the
    default workspace is ``$SOVEREIGN_HOME/workspace``."""
    if workspace is None:
        home = services.settings.home if services is not None else resolve_home()
        workspace = Path(home) / "workspace"
    space = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    egress: EgressGate = services.egress if services is not None else EgressGate()
    return [
        *workspace_tools(space),
        *sandbox_tools(space, sandbox_policy(services, limits)),
        calculator_tool(),
        http_tool(egress),
    ]
