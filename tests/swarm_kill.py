"""For the resume tests: run a swarm in a child process, ``kill -9`` it once its stored tree shows
what the test waits for, and read node states from that database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sovereign.store import Database

REPO = Path(__file__).resolve().parent.parent


def node_ids(db_path: Path, status: str, swarm_id: str = "swarm_killed") -> list[str]:
    """The ids of the swarm's nodes with ``status`` (none while the tables do not exist yet)."""
    db = Database(db_path)
    try:
        rows = db.query("SELECT node_id FROM swarm_nodes WHERE swarm_id = ? AND status = ?", (swarm_id, status))
        return [r["node_id"] for r in rows]
    except Exception:  # the tables may not exist yet
        return []
    finally:
        db.close()


def kill_when(script: str, args: list[str], ready: Callable[[], bool], *, timeout: float = 60) -> None:
    """Run ``script`` (Python source) with ``args``; ``kill -9`` it as soon as ``ready()``."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen([sys.executable, "-c", script, *args], env=env)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert child.poll() is None, "the swarm ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
