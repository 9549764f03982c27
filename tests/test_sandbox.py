"""The sandbox: escapes (path traversal, symlinks, network, fork bomb, runaway output, runaway
CPU and memory, orphaned children) are all refused or stopped, in every isolation mode this
machine offers (bubblewrap, unshare, and the weak mode — allowed explicitly — where the kernel
has Landlock); the filesystem and network checks apply to the modes that claim them. The
memory key and database in the home are unreadable in every mode; without isolation the shell
and Python tools refuse to run unless config allows the weak mode."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from sovereign.config import load_settings
from sovereign.services import Services
from sovereign.tools import ToolError, builtin_tools
from sovereign.tools._landlock import abi_version
from sovereign.tools.sandbox import (
    Sandbox as _Sandbox,
    SandboxLimits,
    _pids_cgroup_root,
    bwrap_works,
    isolation_mode,
    python_executable,
    sandbox_status,
    unshare_works,
)

LANDLOCK = abi_version() > 0
MODES = [m for m, ok in (("bubblewrap", bwrap_works()), ("unshare", unshare_works()), ("weak", LANDLOCK)) if ok]
NETWORK_ISOLATED = [m for m in MODES if m in ("bubblewrap", "unshare")]
FILES_ISOLATED = [m for m in MODES if m == "bubblewrap"]
PROCESS_CAP = os.geteuid() != 0 or _pids_cgroup_root() is not None


def Sandbox(workdir, limits=None, *, mode, **options):  # noqa: N802 - the class, weak mode allowed
    return _Sandbox(workdir, limits or SandboxLimits(), mode=mode, allow_weak=True, **options)


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("top secret")
    os.symlink(tmp_path / "secret.txt", root / "link")
    return root


def run(sandbox, *argv, stdin=None):
    return asyncio.run(sandbox.run(list(argv), stdin=stdin))


def sh(sandbox, script):
    return run(sandbox, "/bin/sh", "-c", script)


@pytest.mark.parametrize("mode", MODES)
def test_runs_in_its_own_working_directory(workspace, mode):
    box = Sandbox(workspace, mode=mode)
    result = sh(box, "echo hello > made.txt && pwd && cat made.txt")
    assert result.ok, result.summary()
    assert result.stdout.splitlines() == [box.cwd_inside, "hello"]
    assert (workspace / "made.txt").read_text() == "hello\n"
    assert result.isolation == mode


@pytest.mark.parametrize("mode", FILES_ISOLATED)
@pytest.mark.parametrize("script", ["cat ../secret.txt", "cat link", f"cat {'/'.join(['..'] * 12)}/etc/hostname"])
def test_files_outside_the_workspace_are_invisible(workspace, mode, script):
    result = sh(Sandbox(workspace, mode=mode), script)
    assert result.exit_code != 0
    assert "top secret" not in result.stdout
    assert "No such file" in result.stderr


@pytest.mark.parametrize("mode", FILES_ISOLATED)
def test_host_paths_are_absent_or_read_only(workspace, mode, tmp_path):
    script = f"ls {tmp_path} ; touch /usr/evil ; echo pwned > /etc/evil ; ls /root /home"
    result = sh(Sandbox(workspace, mode=mode), script)
    assert not Path("/usr/evil").exists() and not Path("/etc/evil").exists()
    assert "secret.txt" not in result.stdout


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("mode", NETWORK_ISOLATED)
def test_no_network_not_even_host_loopback(workspace, mode, listener):
    code = (
        "import socket\n"
        "for host, port in (('127.0.0.1', %d), ('1.1.1.1', 53)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2); print('connected', host)\n"
        "    except OSError as exc:\n"
        "        print('refused', host, exc.errno)\n" % listener
    )
    result = run(Sandbox(workspace, mode=mode), python_executable(), "-I", "-", stdin=code.encode())
    assert "connected" not in result.stdout, result.summary()
    assert result.stdout.count("refused") == 2


@pytest.mark.skipif(not PROCESS_CAP, reason="running as root without a writable pids cgroup: no process cap")
@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_contained(workspace, mode):
    box = Sandbox(workspace, SandboxLimits(wall_seconds=5, max_processes=24), mode=mode)
    started = time.monotonic()
    result = run(box, "/bin/bash", "-c", "bomb() { bomb | bomb & }; bomb; sleep 1; echo still-here")
    assert time.monotonic() - started < 15
    assert "fork" in result.stderr and "Resource temporarily unavailable" in result.stderr
    assert _leftovers("bomb") == []


def _leftovers(marker: str) -> list[int]:
    time.sleep(0.2)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


@pytest.mark.parametrize("mode", MODES)
def test_runaway_output_is_cut_and_the_command_killed(workspace, mode):
    box = Sandbox(workspace, SandboxLimits(max_output_bytes=10_000, wall_seconds=20), mode=mode)
    started = time.monotonic()
    result = sh(box, "yes flood")
    assert time.monotonic() - started < 10
    assert result.output_truncated and not result.ok
    assert len(result.stdout) < 10_200
    assert "output limit reached" in result.summary()


@pytest.mark.parametrize("mode", MODES)
def test_timeout_kills_the_command_and_its_children(workspace, mode):
    box = Sandbox(workspace, SandboxLimits(wall_seconds=1), mode=mode)
    started = time.monotonic()
    result = sh(box, "sleep 987 & (sleep 986 &) ; sleep 985")
    assert result.timed_out and time.monotonic() - started < 8
    assert _leftovers("sleep 98") == []


@pytest.mark.parametrize("mode", MODES)
def test_cpu_limit(workspace, mode):
    box = Sandbox(workspace, SandboxLimits(cpu_seconds=1, wall_seconds=30), mode=mode)
    started = time.monotonic()
    result = run(box, python_executable(), "-I", "-c", "while True: pass")
    assert not result.ok and not result.timed_out
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("mode", MODES)
def test_memory_limit(workspace, mode):
    box = Sandbox(workspace, SandboxLimits(memory_mb=256), mode=mode)
    result = run(box, python_executable(), "-I", "-c", "x = bytearray(1024 * 1024 * 1024); print('allocated')")
    assert not result.ok and "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_file_size_limit(workspace, mode):
    box = Sandbox(workspace, SandboxLimits(max_file_mb=1), mode=mode)
    sh(box, "head -c 5000000 /dev/zero > big.bin")
    assert (workspace / "big.bin").stat().st_size <= 1024 * 1024


def test_shell_and_python_tools(workspace):
    tools = {t.name: t for t in builtin_tools(workspace)}
    assert tools["run_shell"].needs_approval and tools["run_python"].needs_approval
    out = asyncio.run(tools["run_shell"].call({"command": "echo $((6*7)) > answer.txt; cat answer.txt"}))
    assert out.startswith("exit code: 0") and "42" in out
    out = asyncio.run(tools["run_python"].call({"code": "print(open('answer.txt').read().strip() * 2)"}))
    assert "4242" in out
    out = asyncio.run(tools["run_python"].call({"code": "raise SystemExit(3)"}))
    assert out.startswith("exit code: 3")


def test_status_line_names_the_mode():
    line = sandbox_status()
    assert line.startswith("sandbox: ")
    assert {"bubblewrap": "bubblewrap", "unshare": "unshare", "weak": "NONE"}[isolation_mode()] in line


# --- the home (memory key, database) is out of reach; no isolation means no run -------------------

KEY_TEXT = "K3Y-" + "x" * 40


def _home(root: Path, *, database: bool = True) -> Path:
    """A home with a memory key (and, unless ``Services`` will make a real one, a database)."""
    home = root / "home"
    home.mkdir(mode=0o700, parents=True)
    files = [("memory.key", KEY_TEXT)] + ([("sovereign.db", "SQLite format 3\0" + KEY_TEXT)] if database else [])
    for name, text in files:
        (home / name).write_text(text)
        (home / name).chmod(0o600)
    return home


@pytest.mark.parametrize("mode", MODES)
def test_memory_key_and_database_are_unreadable_in_every_mode(tmp_path, mode):
    home = _home(tmp_path)
    for workdir in (tmp_path / "elsewhere", home / "workspace"):  # the default workspace lies in the home
        box = Sandbox(workdir, mode=mode, protect=(home,))
        result = sh(box, f"echo made > made.txt; cat made.txt; cat {home}/memory.key; cat {home}/sovereign.db; "
                         f"ls {home}; cat ../memory.key")
        assert "made" in result.stdout, result.summary()
        assert KEY_TEXT not in result.stdout + result.stderr, (mode, workdir, result.summary())
        assert (workdir / "made.txt").read_text() == "made\n"
        code = f"print(open({str(home / 'memory.key')!r}).read())"
        result = run(box, python_executable(), "-I", "-c", code)
        assert KEY_TEXT not in result.stdout and result.exit_code != 0


def test_a_workspace_holding_the_home_is_refused(tmp_path):
    home = _home(tmp_path / "inner")
    with pytest.raises(ToolError, match="contains"):
        sh(Sandbox(tmp_path, mode=MODES[0], protect=(home,)), "cat inner/home/memory.key")


@pytest.fixture
def no_isolation(tmp_path, monkeypatch):
    """A machine without bubblewrap and unshare: neither is on the PATH."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    bwrap_works.cache_clear()
    unshare_works.cache_clear()
    assert isolation_mode() == "weak"
    yield
    monkeypatch.undo()
    bwrap_works.cache_clear()
    unshare_works.cache_clear()


def _services(home: Path, config: str) -> Services:
    (home / "config.toml").write_text(config)
    return Services.open(load_settings(home))


def test_without_isolation_shell_and_python_refuse_naming_the_setting(tmp_path, no_isolation):
    services = _services(_home(tmp_path, database=False), "")
    try:
        tools = {t.name: t for t in builtin_tools(tmp_path / "ws", services)}
        for name, args in (("run_shell", {"command": "echo hi"}), ("run_python", {"code": "print(1)"})):
            with pytest.raises(ToolError, match=r"refuse to run.*bubblewrap.*\[sandbox\] allow_weak = true"):
                asyncio.run(tools[name].call(args))
        assert tools["run_shell"].effects.leaves_machine  # without isolation it could reach the network
    finally:
        services.close()


@pytest.mark.skipif(not LANDLOCK, reason="no Landlock in this kernel: the weak mode refuses instead")
def test_weak_mode_when_allowed_runs_and_landlock_keeps_the_key_unreadable(tmp_path, no_isolation):
    home = _home(tmp_path, database=False)
    services = _services(home, "[sandbox]\nallow_weak = true\n")
    try:
        run_shell = {t.name: t for t in builtin_tools(home / "workspace", services)}["run_shell"]
        out = asyncio.run(run_shell.call({"command": f"echo $((6*7)); cat {home}/memory.key; cat {home}/sovereign.db; "
                                                      "env | grep -c SOVEREIGN"}))
    finally:
        services.close()
    assert "42" in out and KEY_TEXT not in out and "SQLite format" not in out
    assert "Permission denied" in out
    assert "stdout:\n42\n0\n" in out  # a cleared environment: no SOVEREIGN_* variable inside


@pytest.mark.skipif(not FILES_ISOLATED, reason="bubblewrap cannot run here")
def test_run_shell_with_isolation_cannot_read_the_memory_key(tmp_path):
    home = _home(tmp_path, database=False)
    services = _services(home, "")
    try:
        run_shell = {t.name: t for t in builtin_tools(home / "workspace", services)}["run_shell"]
        out = asyncio.run(run_shell.call({"command": f"cat {home}/memory.key {home}/sovereign.db"}))
    finally:
        services.close()
    assert KEY_TEXT not in out and "SQLite format" not in out and "No such file" in out
