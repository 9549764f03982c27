"""Who is driving a run: one lease row per run being driven, so two processes (or two calls in
one process) never drive the same run at once and never run its tools twice.

A lease names its holder: host, process id and that process's start time (from ``/proc``, so a
recycled pid is not mistaken for the holder). A lease whose holder is gone — killed with
``kill -9``, say — is stale and taken over by the next resume; within one process the runs being
driven are tracked in memory, so a drive that ended without releasing (an exception out of the
store) does not block a resume in the same process. A holder on another host cannot be checked
and is treated as live.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sovereign.agent.errors import RunBusyError

if TYPE_CHECKING:
    from sqlite3 import Connection

    from sovereign.store import Database

__all__ = ["MIGRATION", "claim_in", "driving", "forget", "release", "release_in"]

MIGRATION = """
CREATE TABLE run_leases (
    run_id     TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started    TEXT NOT NULL,
    claimed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
"""

driving: set[str] = set()
"""Runs this process is driving now."""


def _process_started(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: the fields after "(comm)" start at 3


@cache
def _me() -> tuple[str, int, str]:
    pid = os.getpid()
    return socket.gethostname(), pid, _process_started(pid) or ""


def _alive(host: str, pid: int, started: str) -> bool:
    me = _me()
    if host != me[0]:
        return True
    if pid == me[1]:
        return False  # ours: busy only if this process is driving it (checked by the caller)
    return _process_started(pid) == started


def claim_in(conn: Connection, run_id: str) -> None:
    """Take the lease of ``run_id`` inside the caller's transaction; ``RunBusyError`` if a live
    holder has it. The caller adds ``run_id`` to ``driving`` once the transaction commits."""
    if run_id in driving:
        raise RunBusyError(f"run '{run_id}' is already being driven by this process")
    row = conn.execute("SELECT host, pid, started FROM run_leases WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None and _alive(row[0], row[1], row[2]):
        raise RunBusyError(f"run '{run_id}' is being driven by process {row[1]} on {row[0]}; "
                           "resume it once that process has ended")
    host, pid, started = _me()
    conn.execute("INSERT INTO run_leases (run_id, host, pid, started) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (run_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                 "started = excluded.started, claimed_at = excluded.claimed_at", (run_id, host, pid, started))


def release(db: Database, run_id: str) -> None:
    """Give the lease back (the drive ended: finished, stopped, failed or cancelled)."""
    driving.discard(run_id)
    host, pid, _ = _me()
    db.execute(_DELETE, (run_id, host, pid))


def release_in(conn: Connection, run_id: str) -> None:
    """Drop this process's lease row inside the caller's transaction (with the run's final step);
    ``driving`` is cleared by ``release`` or ``forget`` when the drive returns."""
    host, pid, _ = _me()
    conn.execute(_DELETE, (run_id, host, pid))


def forget(run_id: str) -> None:
    driving.discard(run_id)


_DELETE = "DELETE FROM run_leases WHERE run_id = ? AND host = ? AND pid = ?"
