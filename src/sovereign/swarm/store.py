"""A swarm's tree in the database: the swarm (its plan, budget, executor, phase) and every node
(sub-task, status, the run driving it, answer, tokens, cost, time), each change written before
the swarm acts on it, so a swarm killed at any point resumes from what was stored.

The swarm itself is a run (``runs`` row, id = swarm id; its steps are the orchestrator's own
model calls); each node's sub-agent is an ordinary run whose id the node names. A tool node
(``call`` set: ``swarm/tool_nodes.py``) names a planned-call run the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from sovereign.agent.budget import RunUsage
from sovereign.agent.errors import RunNotFoundError
from sovereign.store import Database

__all__ = ["NodeRecord", "SwarmRecord", "SwarmStore", "NODE_TERMINAL"]

MIGRATIONS = [
    """
    CREATE TABLE swarms (
        id          TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
        plan        TEXT,
        budget      TEXT NOT NULL,
        executor    TEXT NOT NULL,
        phase       TEXT NOT NULL,
        orchestrator TEXT NOT NULL DEFAULT '{}',
        critical    TEXT,
        started_at  REAL NOT NULL,
        wall_s      REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE swarm_nodes (
        swarm_id    TEXT NOT NULL REFERENCES swarms(id) ON DELETE CASCADE,
        node_id     TEXT NOT NULL,
        parent      TEXT,
        depth       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        task        TEXT NOT NULL,
        instructions TEXT NOT NULL DEFAULT '',
        tools       TEXT NOT NULL,
        depends_on  TEXT NOT NULL,
        status      TEXT NOT NULL,
        run_id      TEXT,
        attempts    INTEGER NOT NULL DEFAULT 0,
        answer      TEXT,
        stop_reason TEXT,
        usage       TEXT,
        started_at  REAL,
        ended_at    REAL,
        PRIMARY KEY (swarm_id, node_id)
    );
    """,
    "ALTER TABLE swarm_nodes ADD COLUMN call TEXT;",
]

NODE_TERMINAL = ("completed", "failed", "stopped", "skipped", "cancelled")


@dataclass(slots=True)
class NodeRecord:
    """One node of the tree (a planned sub-task, or a sub-agent some agent spawned)."""

    node_id: str
    task: str
    tools: list[str]
    depends_on: list[str]
    status: str = "pending"
    parent: str | None = None
    depth: int = 1
    seq: int = 0
    instructions: str = ""
    run_id: str | None = None
    attempts: int = 0
    answer: str | None = None
    stop_reason: str | None = None
    spent: RunUsage = field(default_factory=RunUsage)
    started_at: float | None = None
    ended_at: float | None = None
    call: dict[str, Any] | None = None
    """A tool node's direct call (``{"tool", "arguments"}``, as planned); None: a sub-agent."""

    @property
    def kind(self) -> str:
        return "agent" if self.call is None else "tool"

    @property
    def duration_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return max((self.ended_at or time.time()) - self.started_at, 0.0)

    def to_dict(self) -> dict[str, Any]:
        u = self.spent
        return {"id": self.node_id, "kind": self.kind, "call": self.call, "parent": self.parent, "depth": self.depth,
                "task": self.task,
                "instructions": self.instructions, "tools": self.tools, "depends_on": self.depends_on,
                "status": self.status, "run_id": self.run_id, "attempts": self.attempts, "answer": self.answer,
                "stop_reason": self.stop_reason, "steps": u.steps, "tool_calls": u.tool_calls,
                "prompt_tokens": u.usage.prompt_tokens, "completion_tokens": u.usage.completion_tokens,
                "cost_usd": u.cost_usd, "time_s": round(self.duration_s, 3)}


@dataclass(slots=True)
class SwarmRecord:
    id: str
    plan: dict[str, Any] | None
    budget: dict[str, Any]
    executor: str
    phase: str
    orchestrator: dict[str, Any]
    critical: dict[str, Any] | None
    started_at: float
    wall_s: float
    nodes: list[NodeRecord]

    def tree(self) -> dict[str, Any]:
        """The tree as the API and ``runs show`` give it (the critical path so far while it runs)."""
        critical = self.critical
        if critical is None:
            from sovereign.swarm.critical import critical_path

            wall = max((n.ended_at or time.time() for n in self.nodes if n.started_at), default=self.started_at)
            critical = critical_path(self.nodes, orchestrator_steps=int(self.orchestrator.get("steps", 0)),
                                     orchestrator_s=float(self.orchestrator.get("seconds", 0.0)),
                                     wall_s=max(wall - self.started_at, 0.0))
        return {"id": self.id, "phase": self.phase, "executor": self.executor, "budget": self.budget,
                "orchestrator": self.orchestrator, "critical_path": critical,
                "wall_s": round(self.wall_s, 3), "nodes": [n.to_dict() for n in self.nodes]}


def _usage_json(spent: RunUsage) -> str:
    return orjson.dumps(spent.to_dict()).decode()


def _call_json(node: NodeRecord) -> str | None:
    return orjson.dumps(node.call).decode() if node.call is not None else None


class SwarmStore:
    """Swarms and their nodes in the shared database (component ``swarm``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("swarm", MIGRATIONS)

    def create(self, swarm_id: str, *, budget: dict[str, Any], executor: str, phase: str = "planning") -> None:
        """A new tree for run ``swarm_id`` (a swarm: ``planning``; a run that delegates: ``delegating``)."""
        self.db.execute("INSERT INTO swarms (id, budget, executor, phase, started_at) VALUES (?, ?, ?, ?, ?)",
                        (swarm_id, orjson.dumps(budget).decode(), executor, phase, time.time()))

    def save_plan(self, swarm_id: str, plan: dict[str, Any], nodes: list[NodeRecord],
                  orchestrator: dict[str, Any]) -> None:
        """The plan and its nodes (all pending), in one transaction."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE swarms SET plan = ?, phase = 'running', orchestrator = ? WHERE id = ?",
                         (orjson.dumps(plan).decode(), orjson.dumps(orchestrator).decode(), swarm_id))
            for node in nodes:
                self._insert(conn, swarm_id, node)

    def add_node(self, swarm_id: str, node: NodeRecord) -> None:
        with self.db.transaction() as conn:
            self._insert(conn, swarm_id, node)

    @staticmethod
    def _insert(conn: Any, swarm_id: str, node: NodeRecord) -> None:
        conn.execute(
            "INSERT INTO swarm_nodes (swarm_id, node_id, parent, depth, seq, task, instructions, tools, depends_on, "
            "status, call) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (swarm_id, node.node_id, node.parent, node.depth, node.seq, node.task, node.instructions,
             orjson.dumps(node.tools).decode(), orjson.dumps(node.depends_on).decode(), node.status, _call_json(node)))

    def update_node(self, swarm_id: str, node: NodeRecord) -> None:
        self.update_nodes(swarm_id, [node])

    def update_nodes(self, swarm_id: str, nodes: list[NodeRecord]) -> None:
        """Store the nodes' state, all in one transaction (a fan-out starts in one write)."""
        if not nodes:
            return
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE swarm_nodes SET task = ?, instructions = ?, tools = ?, status = ?, run_id = ?, "
                "attempts = ?, answer = ?, stop_reason = ?, usage = ?, started_at = ?, ended_at = ?, call = ? "
                "WHERE swarm_id = ? AND node_id = ?",
                [(node.task, node.instructions, orjson.dumps(node.tools).decode(), node.status, node.run_id,
                  node.attempts, node.answer, node.stop_reason, _usage_json(node.spent), node.started_at,
                  node.ended_at, _call_json(node), swarm_id, node.node_id) for node in nodes])

    def set_phase(self, swarm_id: str, phase: str, *, orchestrator: dict[str, Any] | None = None,
                  critical: dict[str, Any] | None = None, wall_s: float | None = None) -> None:
        self.db.execute(
            "UPDATE swarms SET phase = ?, orchestrator = COALESCE(?, orchestrator), critical = COALESCE(?, critical), "
            "wall_s = COALESCE(?, wall_s) WHERE id = ?",
            (phase, orjson.dumps(orchestrator).decode() if orchestrator is not None else None,
             orjson.dumps(critical).decode() if critical is not None else None, wall_s, swarm_id))

    def save_orchestrator(self, swarm_id: str, state: dict[str, Any]) -> None:
        self.db.execute("UPDATE swarms SET orchestrator = ? WHERE id = ?", (orjson.dumps(state).decode(), swarm_id))

    def is_swarm(self, run_id: str) -> bool:
        return self.db.query_one("SELECT 1 FROM swarms WHERE id = ?", (run_id,)) is not None

    def get(self, swarm_id: str) -> SwarmRecord:
        row = self.db.query_one("SELECT * FROM swarms WHERE id = ?", (swarm_id,))
        if row is None:
            raise RunNotFoundError(f"no swarm with id '{swarm_id}'", param="run_id")
        return SwarmRecord(
            id=row["id"], plan=orjson.loads(row["plan"]) if row["plan"] else None, budget=orjson.loads(row["budget"]),
            executor=row["executor"], phase=row["phase"], orchestrator=orjson.loads(row["orchestrator"]),
            critical=orjson.loads(row["critical"]) if row["critical"] else None, started_at=row["started_at"],
            wall_s=row["wall_s"], nodes=self.nodes(swarm_id))

    def nodes(self, swarm_id: str) -> list[NodeRecord]:
        rows = self.db.query("SELECT * FROM swarm_nodes WHERE swarm_id = ? ORDER BY seq", (swarm_id,))
        return [_node(row) for row in rows]


def _node(row: Any) -> NodeRecord:
    return NodeRecord(
        node_id=row["node_id"], task=row["task"], tools=orjson.loads(row["tools"]),
        depends_on=orjson.loads(row["depends_on"]), status=row["status"], parent=row["parent"], depth=row["depth"],
        seq=row["seq"], instructions=row["instructions"], run_id=row["run_id"], attempts=row["attempts"],
        answer=row["answer"], stop_reason=row["stop_reason"],
        spent=RunUsage.from_dict(orjson.loads(row["usage"])) if row["usage"] else RunUsage(),
        started_at=row["started_at"], ended_at=row["ended_at"],
        call=orjson.loads(row["call"]) if row["call"] else None)
