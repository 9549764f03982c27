"""Run untrusted commands in a sandbox: own working directory, CPU/memory/time/output/process
limits, no network, and the whole process tree killed on timeout.

Isolation, the strongest the machine allows:

- **bubblewrap** (``bwrap``, Debian package ``bubblewrap``), when it can create namespaces here:
  a private filesystem view (system folders read-only, the workspace read-write at
  ``/workspace``, a private ``/tmp``; the home is never bound), and new user, PID, network, IPC
  and UTS namespaces, so there is no network at all and killing the sandbox kills every process.
- otherwise **unshare** (util-linux): network, PID and a private mount namespace in which the
  protected folders (the home: memory key, database) are covered by an empty ``tmpfs`` before
  the command starts (the workspace, when it lies inside the home, is bound back).
- otherwise nothing isolates the command, and the sandbox **refuses to run** unless the weak
  mode is allowed explicitly (``[sandbox] allow_weak = true``; ``SandboxUnavailableError`` says
  so). The weak mode runs the command with a cleared environment, the workspace as its working
  directory, the limits below, and **Landlock** (``_landlock.py``): it may read the system
  folders, read and write the workspace and a private temporary folder, nothing else — so the
  home (memory key, database) cannot be opened. Where the kernel has no Landlock the weak mode
  refuses too (it could not keep the key unreadable). What the weak mode does *not* prevent:
  UDP and other non-TCP network traffic (TCP connect/bind are denied only with Landlock ABI 4+),
  seeing other processes' names and PIDs, and using the machine's CPU and memory up to the limits.
- always: ``setrlimit`` limits (CPU seconds, address space, file size, open files, no core
  dumps), a process cap (a ``pids`` cgroup when running as root, where ``RLIMIT_NPROC`` does not
  apply; ``RLIMIT_NPROC`` otherwise), a wall-clock timeout and an output cap, either of which
  kills the process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sovereign.config import resolve_home
from sovereign.tools import _landlock
from sovereign.tools.base import ToolError

__all__ = ["SandboxLimits", "SandboxResult", "Sandbox", "SandboxUnavailableError", "isolation_mode", "sandbox_status"]

_INSIDE_WORKSPACE = "/workspace"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime", "/etc/passwd", "/etc/group")
_PIDS_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
WEAK_HINT = ("install the Debian package 'bubblewrap' (and allow user namespaces), or set "
             "`[sandbox] allow_weak = true` in config.toml to run them with resource limits and Landlock only")


class SandboxUnavailableError(ToolError):
    """Shell and Python tools cannot run here with the isolation the configuration requires."""

    code = "sandbox_unavailable"


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """Resource limits for one sandboxed command."""

    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    memory_mb: int = 1024
    max_output_bytes: int = 64_000
    max_processes: int = 64
    max_file_mb: int = 64
    max_open_files: int = 256


@dataclass
class SandboxResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    isolation: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def summary(self) -> str:
        """The result as the text an agent reads back."""
        parts = [f"exit code: {self.exit_code}"]
        if self.timed_out:
            parts.append("killed: wall-clock time limit reached")
        if self.output_truncated:
            parts.append("killed: output limit reached (output truncated)")
        if self.stdout:
            parts.append("stdout:\n" + self.stdout)
        if self.stderr:
            parts.append("stderr:\n" + self.stderr)
        return "\n".join(parts)


# --- what this machine allows ------------------------------------------------------------


def _probe(argv: list[str]) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.cache
def bwrap_works() -> bool:
    """Whether ``bwrap`` is installed and can create user/net/pid namespaces here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    return _probe([bwrap, *_bwrap_mounts(), "--unshare-all", "--die-with-parent", "--", "/bin/true"])


@functools.cache
def unshare_works() -> bool:
    """Whether ``unshare`` can give a command its own network, PID and mount namespaces here."""
    argv = _unshare_prefix()
    # The mode hides the home with a tmpfs mount inside its namespace: that must work too.
    return bool(argv) and _probe([*argv, "/bin/sh", "-c", "mount -t tmpfs sovereign-probe /mnt"])


def _unshare_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]


def isolation_mode() -> str:
    """``bubblewrap``, ``unshare`` or ``weak`` (no isolation) — the strongest available."""
    if bwrap_works():
        return "bubblewrap"
    if unshare_works():
        return "unshare"
    return "weak"


def _pids_cgroup_root() -> Path | None:
    """A writable cgroup folder with a ``pids`` controller (v1 or v2), if we may use one."""
    for root in _PIDS_CGROUP_ROOTS:
        if not os.access(root, os.W_OK):
            continue
        if (root / "cgroup.procs").exists() and (
            (root / "pids.max").exists() or root.name == "pids" or _v2_has_pids(root)
        ):
            return root
    return None


def _v2_has_pids(root: Path) -> bool:
    try:
        return "pids" in (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def sandbox_status() -> str:
    """One line for ``sovereign doctor``: how shell and Python tools are isolated here."""
    mode = isolation_mode()
    if os.geteuid() == 0:
        procs = "pids cgroup" if _pids_cgroup_root() else "NO process cap (root ignores RLIMIT_NPROC)"
    else:
        procs = "RLIMIT_NPROC"
    limits = f"limits: CPU, memory, file size, open files, output, wall time; processes: {procs}"
    if mode == "bubblewrap":
        return f"sandbox: bubblewrap ({shutil.which('bwrap')}) — private filesystem, no network; {limits}"
    hint = "install the Debian package 'bubblewrap' (and allow user namespaces) for a private filesystem"
    if mode == "unshare":
        return (f"sandbox: unshare — no network, own PID namespace, home hidden, rest of the host filesystem "
                f"visible ({hint}); {limits}")
    landlock = (f"Landlock ABI {_landlock.abi_version()}" if _landlock.abi_version() else
                "no Landlock in this kernel, so the weak mode refuses too")
    return (f"sandbox: NONE — shell and Python tools refuse to run unless `[sandbox] allow_weak = true` "
            f"(weak mode: limits + {landlock}; network visible) ({hint}); {limits}")


# --- building the command ----------------------------------------------------------------


def _bwrap_mounts() -> list[str]:
    args: list[str] = []
    for folder in _SYSTEM_DIRS:
        path = Path(folder)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            args += ["--ro-bind", folder, folder]
    for item in _ETC_FILES:
        args += ["--ro-bind-try", item, item]
    prefix = Path(sys.base_prefix).resolve()
    if not any(prefix.is_relative_to(d) for d in _SYSTEM_DIRS):
        args += ["--ro-bind", str(prefix), str(prefix)]
    return args + ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def python_executable() -> str:
    """The base interpreter (not our virtualenv): only the standard library inside the sandbox."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else os.path.realpath(sys.executable)


# In the private mount namespace of the unshare mode: cover each protected folder with an empty
# tmpfs, binding the workspace back when it lies inside one; then run the command from it.
_HIDE_SCRIPT = """set -e
ws="$1"; stage="$2"; count="$3"; shift 3
mount --bind "$ws" "$stage"
while [ "$count" -gt 0 ]; do mount -t tmpfs -o mode=0755,size=64k sovereign-hidden "$1"; shift; count=$((count-1)); done
mkdir -p "$ws"
mount --bind "$stage" "$ws"
umount "$stage"
cd "$ws"
exec "$@"
"""


@dataclass
class Sandbox:
    """Runs commands with ``workdir`` as their working directory (``/workspace`` inside bwrap).

    ``protect``: folders no command may read in any mode (default: the sovereign home, which
    holds the memory key and the database); a workspace that contains one is refused.
    ``allow_weak``: run even without isolation (see the module docstring)."""

    workdir: Path
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    mode: str | None = None  # None: the strongest available (see ``isolation_mode``)
    allow_weak: bool = False
    protect: tuple[Path, ...] = ()
    read_only: bool = False
    """Mount the workspace read-only (bubblewrap only), so writes must go through the tools."""

    def __post_init__(self) -> None:
        self.workdir = Path(os.path.realpath(self.workdir))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.mode is None:
            self.mode = isolation_mode()
        if not self.protect:
            self.protect = (_default_home(),)
        self.protect = tuple(Path(os.path.realpath(p)) for p in self.protect)

    @property
    def cwd_inside(self) -> str:
        return _INSIDE_WORKSPACE if self.mode == "bubblewrap" else str(self.workdir)

    def check(self) -> None:
        """Raise ``SandboxUnavailableError`` when this sandbox may not run commands here."""
        for folder in self.protect:
            if folder == self.workdir or folder.is_relative_to(self.workdir):
                raise SandboxUnavailableError(
                    f"the workspace {self.workdir} contains {folder} (memory key, database): shell and Python "
                    "tools refuse to run there; choose a workspace folder inside it or elsewhere")
        if self.mode != "weak":
            return
        if not self.allow_weak:
            raise SandboxUnavailableError(
                "no sandbox isolation on this machine (bubblewrap and unshare are unavailable), so shell and "
                f"Python tools refuse to run: {WEAK_HINT}")
        if not _landlock.abi_version():
            raise SandboxUnavailableError(
                "`[sandbox] allow_weak = true`, but this kernel has no Landlock, so the weak mode could not keep "
                "the memory key and database unreadable: install the Debian package 'bubblewrap' (and allow "
                "user namespaces) to run shell and Python tools here")

    def _argv(self, command: Sequence[str], stage: str | None) -> list[str]:
        inner = list(command)
        if self.mode == "bubblewrap":
            prlimit = shutil.which("prlimit")
            if prlimit is not None and os.geteuid() != 0:
                # Counted inside the new user namespace only, so the user's other processes don't count.
                inner = [prlimit, f"--nproc={self.limits.max_processes}", "--", *inner]
            return [
                shutil.which("bwrap") or "bwrap", *_bwrap_mounts(),
                "--ro-bind" if self.read_only else "--bind", str(self.workdir), _INSIDE_WORKSPACE,
                "--chdir", _INSIDE_WORKSPACE,
                "--unshare-all", "--die-with-parent", "--new-session", "--", *inner,
            ]
        if self.mode == "unshare":
            hidden = [str(p) for p in self.protect if p.is_dir()]
            return [*_unshare_prefix(), "/bin/sh", "-c", _HIDE_SCRIPT, "sandbox", str(self.workdir), stage or "",
                    str(len(hidden)), *hidden, *inner]
        return inner

    def _env(self, tmp: str | None) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.cwd_inside,
            "TMPDIR": tmp or "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def _landlock(self, tmp: str) -> _landlock.Ruleset:
        """What the weak mode's command may touch: system folders (read), workspace and ``tmp``."""
        read = [*_SYSTEM_DIRS, *_ETC_FILES, "/usr/local", str(Path(sys.base_prefix).resolve()), "/dev/urandom",
                "/dev/random", "/dev/zero"]
        ruleset = _landlock.Ruleset(read=tuple(read), write=(str(self.workdir), tmp, "/dev/null"))
        ruleset.prepare()
        return ruleset

    def _preexec(self, cgroup: Path | None, ruleset: _landlock.Ruleset | None) -> Callable[[], None]:
        limits = self.limits
        nproc: int | None = None
        if os.geteuid() != 0 and self.mode != "bubblewrap":
            # Without a user namespace RLIMIT_NPROC counts all our processes, so leave room for them.
            nproc = _count_own_processes() + limits.max_processes

        def apply() -> None:
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text("0")
            memory = limits.memory_mb * 1024 * 1024
            for kind, value in (
                (resource.RLIMIT_CPU, limits.cpu_seconds),
                (resource.RLIMIT_AS, memory),
                (resource.RLIMIT_FSIZE, limits.max_file_mb * 1024 * 1024),
                (resource.RLIMIT_NOFILE, limits.max_open_files),
                (resource.RLIMIT_CORE, 0),
            ):
                resource.setrlimit(kind, (value, value))
            if nproc is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            if ruleset is not None:
                ruleset.restrict()

        return apply

    @contextlib.contextmanager
    def _prepared(self, command: Sequence[str]) -> Iterator[tuple[Path | None, Callable[[], None], list[str],
                                                                   dict[str, str]]]:
        """``(cgroup, preexec, argv, env)`` for one command, with what they need held open."""
        self.check()
        with contextlib.ExitStack() as stack:
            tmp = stage = None
            ruleset = None
            if self.mode == "weak":
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="sovereign-sandbox-"))
                ruleset = self._landlock(tmp)
                stack.callback(ruleset.close)
            elif self.mode == "unshare":
                stage = stack.enter_context(tempfile.TemporaryDirectory(prefix="sovereign-stage-"))
            cgroup = stack.enter_context(_pids_cgroup(self.limits.max_processes))
            yield cgroup, self._preexec(cgroup, ruleset), self._argv(command, stage), self._env(tmp)

    async def run(self, command: Sequence[str], *, stdin: bytes | None = None) -> SandboxResult:
        """Run ``command`` (an argv list) to completion or until a limit kills it; raises
        ``SandboxUnavailableError`` when it may not run here (see ``check``)."""
        with self._prepared(command) as (cgroup, preexec, argv, env):
            return await self._execute(command, stdin, cgroup, preexec, argv, env)

    @contextlib.asynccontextmanager
    async def session(self, command: Sequence[str]) -> AsyncIterator[asyncio.subprocess.Process]:
        """Start ``command`` with pipes on stdin, stdout and stderr, for a conversation with it
        (the caller keeps the time and output limits); its process group is killed on the way out."""
        with self._prepared(command) as (cgroup, preexec, argv, env):
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.workdir, env=env, start_new_session=True,
                preexec_fn=preexec, limit=1 << 20,
            )
            try:
                yield process
            finally:
                _kill(process, cgroup)
                with contextlib.suppress(ProcessLookupError, TimeoutError):
                    async with asyncio.timeout(5):
                        await process.wait()

    async def _execute(self, command: Sequence[str], stdin: bytes | None, cgroup: Path | None,
                       preexec: Callable[[], None], argv: list[str], env: dict[str, str]) -> SandboxResult:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
        )
        collector = _Collector(self.limits.max_output_bytes)
        timed_out = False
        try:
            if stdin is not None and process.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    process.stdin.write(stdin)
                    await process.stdin.drain()
                process.stdin.close()
            readers = asyncio.gather(
                collector.read(process.stdout, "stdout", lambda: _kill(process, cgroup)),
                collector.read(process.stderr, "stderr", lambda: _kill(process, cgroup)),
                process.wait(),
            )
            try:
                async with asyncio.timeout(self.limits.wall_seconds):
                    await readers
            except TimeoutError:
                timed_out = True
        finally:
            _kill(process, cgroup)
            with contextlib.suppress(ProcessLookupError):
                async with asyncio.timeout(5):
                    await process.wait()
        return SandboxResult(
            exit_code=process.returncode,
            stdout=collector.text("stdout"),
            stderr=collector.text("stderr"),
            timed_out=timed_out,
            output_truncated=collector.overflowed,
            isolation=self.mode or "",
        )


def _default_home() -> Path:
    """``$SOVEREIGN_HOME`` (else ``~/.sovereign``), as ``config.resolve_home`` finds it."""
    return resolve_home()


class _Collector:
    """Gathers stdout and stderr up to a shared byte cap; past it, kills the command."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self.overflowed = False
        self.chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

    async def read(self, stream: asyncio.StreamReader | None, name: str, kill: Callable[[], None]) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            room = self.cap - self.used
            if len(chunk) > room:
                self.chunks[name].append(chunk[: max(room, 0)])
                self.used = self.cap
                if not self.overflowed:
                    self.overflowed = True
                    kill()
                continue
            self.chunks[name].append(chunk)
            self.used += len(chunk)

    def text(self, name: str) -> str:
        text = b"".join(self.chunks[name]).decode("utf-8", errors="replace")
        if self.overflowed and text:
            text += f"\n... (output truncated at {self.cap} bytes)"
        return text


def _kill(process: asyncio.subprocess.Process, cgroup: Path | None) -> None:
    """SIGKILL the command's process group (and every process in its cgroup)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if cgroup is not None:
        for pid in _cgroup_pids(cgroup):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(line) for line in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


@contextlib.contextmanager
def _pids_cgroup(max_processes: int) -> Iterator[Path | None]:
    """A fresh pids cgroup capped at ``max_processes`` (root only: RLIMIT_NPROC skips root)."""
    root = _pids_cgroup_root() if os.geteuid() == 0 else None
    if root is None:
        yield None
        return
    group = root / f"sovereign-sandbox-{uuid.uuid4().hex[:12]}"
    try:
        group.mkdir()
        (group / "pids.max").write_text(str(max_processes))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        for _ in range(50):
            for pid in _cgroup_pids(group):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.02)


def _count_own_processes() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count
