"""Processes that open a fresh home at the same moment: schema migrations run once, and the
memory and audit-anchor keys are created once, whole, and read back identically by everyone."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sovereign.governance.audit_anchor import key_id, load_or_create_key
from sovereign.memory.crypto import load_key
from sovereign.store.database import Database

RACERS = 6
_SCRIPTS = [
    "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)",
    "ALTER TABLE things ADD COLUMN size INTEGER",
]


def _migrate(path: str, barrier) -> str:
    barrier.wait()
    database = Database(path)
    try:
        database.migrate("racing", _SCRIPTS)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the failure itself is what the test reports
        return f"{type(exc).__name__}: {exc}"
    finally:
        database.close()


def _memory_key(home: str, barrier) -> bytes:
    barrier.wait()
    return load_key(Path(home))


def _anchor_key(path: str, barrier) -> str:
    barrier.wait()
    return key_id(load_or_create_key(Path(path), create=True).public_key())


def _race(target, argument) -> list:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(RACERS)
        with context.Pool(RACERS) as pool:
            return pool.starmap(target, [(argument, barrier)] * RACERS)


def test_migrations_racing_on_a_fresh_database_run_once(tmp_path, monkeypatch):
    path = tmp_path / "race.db"
    assert _race(_migrate, str(path)) == ["ok"] * RACERS
    database = Database(path)
    versions = database.query("SELECT version FROM schema_migrations WHERE component = 'racing'")
    assert [row[0] for row in versions] == [1, 2]
    assert [row[1] for row in database.query("PRAGMA table_info(things)")] == ["id", "name", "size"]


def test_the_memory_key_created_by_racing_processes_is_one_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_MEMORY_KEY", raising=False)
    keys = _race(_memory_key, str(tmp_path))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert load_key(tmp_path) == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == ["memory.key"]  # no staging files left behind


def test_the_audit_anchor_key_created_by_racing_processes_is_one_key(tmp_path):
    path = tmp_path / "audit-anchor.key"
    ids = _race(_anchor_key, str(path))
    assert len(set(ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["audit-anchor.key"]
