"""Durable runs: each run and every one of its steps in the database, written before the next
step begins, so a run killed at any point can be shown and resumed from what was stored."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from sovereign.agent import leases
from sovereign.agent.budget import RunUsage
from sovereign.agent.errors import RunNotFoundError
from sovereign.agent.steps import Step, step_from_json, step_to_json
from sovereign.store import Database

if TYPE_CHECKING:
    from sqlite3 import Connection

__all__ = ["RunRecord", "RunStore"]

MIGRATIONS = [
    """
    CREATE TABLE runs (
        id                TEXT PRIMARY KEY,
        agent             TEXT NOT NULL,
        owner             TEXT,
        task              TEXT NOT NULL,
        model             TEXT,
        status            TEXT NOT NULL,
        stop_reason       TEXT,
        answer            TEXT,
        agent_json        TEXT NOT NULL,
        prompt_tokens     INTEGER NOT NULL DEFAULT 0,
        cached_tokens     INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
        model_calls       INTEGER NOT NULL DEFAULT 0,
        steps             INTEGER NOT NULL DEFAULT 0,
        tool_calls        INTEGER NOT NULL DEFAULT 0,
        cost_usd          REAL NOT NULL DEFAULT 0,
        elapsed_s         REAL NOT NULL DEFAULT 0,
        created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX runs_created ON runs (created_at);
    CREATE INDEX runs_owner ON runs (owner, created_at);
    CREATE TABLE run_steps (
        run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        idx        INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        data       TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (run_id, idx)
    );
    """,
    # The run's running totals ride on the step row that changed them (one statement per commit
    # instead of a step insert plus a runs update); the runs row gets them at status changes.
    "ALTER TABLE run_steps ADD COLUMN totals TEXT;",
    leases.MIGRATION,
]

TERMINAL = ("completed", "stopped", "failed", "cancelled")


@dataclass(slots=True)
class RunRecord:
    id: str
    agent: str
    owner: str | None
    task: str
    model: str | None
    status: str
    stop_reason: str | None
    answer: str | None
    agent_config: dict[str, Any]
    spent: RunUsage
    created_at: str
    updated_at: str
    steps: list[Step] = field(default_factory=list)

    def to_dict(self, *, with_steps: bool = False) -> dict[str, Any]:
        data = {
            "id": self.id, "agent": self.agent, "owner": self.owner, "task": self.task, "model": self.model,
            "status": self.status, "stop_reason": self.stop_reason, "answer": self.answer,
            "usage": self.spent.to_dict(), "created_at": self.created_at, "updated_at": self.updated_at,
        }
        if with_steps:
            data["steps"] = [step.to_dict() for step in self.steps]
        return data


def _spent(row: Any) -> RunUsage:
    """The run's totals: those on its latest step that carries them, else the runs row's (whose
    columns have the same names)."""
    return RunUsage.from_dict(orjson.loads(row["step_totals"]) if row["step_totals"] is not None else row)


_INSERT_STEP = "INSERT INTO run_steps (run_id, idx, kind, data, totals) VALUES (?, ?, ?, ?, ?)"
_SELECT_RUN = (
    "SELECT runs.*, latest.totals AS step_totals, latest.created_at AS step_at FROM runs "
    "LEFT JOIN run_steps AS latest ON latest.run_id = runs.id AND latest.idx = ("
    "SELECT MAX(idx) FROM run_steps WHERE run_id = runs.id AND totals IS NOT NULL)"
)
_TOTALS = (
    "prompt_tokens = ?, cached_tokens = ?, completion_tokens = ?, reasoning_tokens = ?, model_calls = ?, "
    "steps = ?, tool_calls = ?, cost_usd = ?, elapsed_s = ?, "
    "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')"
)


def _totals(spent: RunUsage) -> tuple:
    u = spent.usage
    return (u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.reasoning_tokens, u.requests,
            spent.steps, spent.tool_calls, spent.cost_usd, spent.elapsed())


class RunStore:
    """Runs and their steps in the shared database (component ``runs``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("runs", MIGRATIONS)

    def create(self, *, run_id: str, agent_config: dict[str, Any], task: str, owner: str | None,
               model: str | None, first_step: Step, claim: bool = False, then: Sequence[Step] = ()) -> RunRecord:
        """Store a new run with its first step and the steps ``then`` (and, with ``claim``, this
        process's lease on it); returns it as ``get`` would."""
        steps = [first_step, *then]
        for index, step in enumerate(steps):
            step.index = index
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (id, agent, owner, task, model, status, agent_json) VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (run_id, agent_config["name"], owner, task, model, json.dumps(agent_config)),
            )
            for step in steps:
                conn.execute(_INSERT_STEP, (run_id, step.index, step.kind, step_to_json(step), None))
            if claim:
                leases.claim_in(conn, run_id)
        if claim:
            leases.driving.add(run_id)
        return RunRecord(id=run_id, agent=agent_config["name"], owner=owner, task=task, model=model, status="running",
                         stop_reason=None, answer=None, agent_config=agent_config, spent=RunUsage(),
                         created_at=first_step.started_at, updated_at=first_step.started_at, steps=steps)

    def append(self, run_id: str, steps: Sequence[Step], spent: RunUsage | None = None,
               also: Sequence[Callable[[Connection], None]] = ()) -> None:
        """Store steps, the run's running totals (when given, on the last step) and the writes in
        ``also`` (ledger rows, audit entries of the same steps): all of it, or none."""
        if not steps:
            raise ValueError("append needs at least one step")
        totals = orjson.dumps(spent.to_dict()).decode() if spent is not None else None
        last = len(steps) - 1
        params: list[Any] = []
        for i, step in enumerate(steps):
            params += (run_id, step.index, step.kind, step_to_json(step), totals if i == last else None)
        sql = _INSERT_STEP + ", (?, ?, ?, ?, ?)" * last
        if not also:
            self.db.execute(sql, params)  # one statement: atomic on its own
            return
        with self.db.transaction() as conn:
            conn.execute(sql, params)
            for write in also:
                write(conn)

    def claim(self, run_id: str) -> None:
        """Take the lease of a stored run for this process (see ``leases``)."""
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise RunNotFoundError(f"no run with id '{run_id}'", param="run_id")
            leases.claim_in(conn, run_id)
        leases.driving.add(run_id)

    def release(self, run_id: str) -> None:
        leases.release(self.db, run_id)

    def set_status(self, run_id: str, status: str, *, stop_reason: str | None = None, answer: str | None = None,
                   spent: RunUsage | None = None) -> None:
        with self.db.transaction() as conn:
            self.set_status_in(conn, run_id, status, stop_reason=stop_reason, answer=answer, spent=spent)

    @staticmethod
    def set_status_in(conn: Connection, run_id: str, status: str, *, stop_reason: str | None = None,
                      answer: str | None = None, spent: RunUsage | None = None) -> None:
        """``set_status`` inside the caller's transaction (e.g. with the run's final step); a
        final status also drops this process's lease."""
        if status in TERMINAL:
            leases.release_in(conn, run_id)
        if spent is None:
            conn.execute("UPDATE runs SET status = ?, stop_reason = ?, answer = ?, "
                         "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?",
                         (status, stop_reason, answer, run_id))
        else:
            conn.execute(f"UPDATE runs SET status = ?, stop_reason = ?, answer = ?, {_TOTALS} WHERE id = ?",
                         (status, stop_reason, answer, *_totals(spent), run_id))

    def get(self, run_id: str, *, with_steps: bool = True) -> RunRecord:
        row = self.db.query_one(f"{_SELECT_RUN} WHERE runs.id = ?", (run_id,))
        if row is None:
            raise RunNotFoundError(f"no run with id '{run_id}'", param="run_id")
        record = self._record(row)
        if with_steps:
            record.steps = self.steps(run_id)
        return record

    def steps(self, run_id: str, *, after: int = -1) -> list[Step]:
        rows = self.db.query("SELECT kind, data FROM run_steps WHERE run_id = ? AND idx > ? ORDER BY idx",
                             (run_id, after))
        return [step_from_json(row["data"], row["kind"]) for row in rows]

    def list(self, *, limit: int = 20, owner: str | None = None, status: str | None = None) -> list[RunRecord]:
        clauses, params = [], []
        if owner is not None:
            clauses.append("runs.owner = ?")
            params.append(owner)
        if status is not None:
            clauses.append("runs.status = ?")
            params.append(status)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.db.query(f"{_SELECT_RUN} {where} ORDER BY runs.created_at DESC, runs.rowid DESC LIMIT ?",
                             (*params, limit))
        return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: Any) -> RunRecord:
        return RunRecord(
            id=row["id"], agent=row["agent"], owner=row["owner"], task=row["task"], model=row["model"],
            status=row["status"], stop_reason=row["stop_reason"], answer=row["answer"],
            agent_config=json.loads(row["agent_json"]), spent=_spent(row),
            created_at=row["created_at"], updated_at=max(row["updated_at"], row["step_at"] or ""),
        )
