"""Public vs private agents: which memory scopes, knowledge bases, workspaces and tools an agent
may touch.

A *private* agent (the default) acts for its owner and may use the owner's resources. A *public*
agent (``identities.public = 1``, e.g. one answering strangers on a channel) sees nothing but
what its owner explicitly exposed to it in ``agent_exposures`` — never private memory, the
knowledge base, workspace files or tools by default. Humans are not restricted here (roles and
key scopes govern them).

This is enforced in the runtime, not the prompt: the agent runtime builds an ``Access`` once per
run (``VisibilityStore.access_for(agent)``) and calls ``access.require(kind, name)`` before
mounting a tool, opening a memory scope, searching a knowledge base or touching the workspace;
the memory / knowledge / workspace tools call it again before each read (defence in depth).
Exposure name ``*`` exposes every resource of that kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sovereign.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from sovereign.store import Database

if TYPE_CHECKING:
    from sovereign.governance.audit import AuditLog

__all__ = ["Access", "ResourceKind", "VisibilityStore", "decide_access"]

ResourceKind = Literal["memory", "kb", "workspace", "tool"]
KINDS: tuple[str, ...] = ("memory", "kb", "workspace", "tool")
ALL = "*"

MIGRATIONS = [
    """
    CREATE TABLE agent_exposures (
        agent_id      TEXT NOT NULL REFERENCES identities(id),
        resource_kind TEXT NOT NULL CHECK (resource_kind IN ('memory', 'kb', 'workspace', 'tool')),
        resource_name TEXT NOT NULL,
        created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (agent_id, resource_kind, resource_name)
    );
    """
]


@dataclass(frozen=True, slots=True)
class Access:
    """What one identity may reach; ``None`` for a kind means unrestricted."""

    identity: str
    public: bool
    allowed: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    def allows(self, kind: ResourceKind, name: str) -> bool:
        names = self.allowed.get(kind)
        return names is None or ALL in names or name in names

    def require(self, kind: ResourceKind, name: str) -> None:
        if not self.allows(kind, name):
            raise PermissionDeniedError(
                f"public agent '{self.identity}' may not use {kind} '{name}': its owner has not exposed it",
                code="not_exposed", param=kind,
            )

    def filter(self, kind: ResourceKind, names: Iterable[str]) -> list[str]:
        """The subset of ``names`` this identity may use (e.g. tools to mount)."""
        return [name for name in names if self.allows(kind, name)]


def decide_access(identity: Mapping[str, Any], exposures: Iterable[tuple[str, str]]) -> Access:
    """Pure rule: humans and private agents are unrestricted; public agents get exactly their
    exposures (``(kind, name)`` pairs)."""
    public = identity.get("kind") == "agent" and bool(identity.get("public"))
    name = str(identity.get("name") or identity.get("id"))
    if not public:
        return Access(name, False, {kind: None for kind in KINDS})
    granted: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for kind, resource in exposures:
        if kind in granted:
            granted[kind].add(resource)
    return Access(name, True, {kind: frozenset(names) for kind, names in granted.items()})


class VisibilityStore:
    """Exposures in the shared database (needs the ``identities`` table from ``KeyStore``)."""

    def __init__(self, db: Database, *, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit
        db.migrate("visibility", MIGRATIONS)

    def _agent(self, agent: str) -> dict:
        row = self.db.query_one("SELECT * FROM identities WHERE name = ? OR id = ?", (agent, agent))
        if row is None:
            raise NotFoundError(f"identity '{agent}' does not exist")
        if row["kind"] != "agent":
            raise InvalidRequestError(f"'{agent}' is a human; exposures apply to agents", param="agent")
        return dict(row)

    def expose(self, agent: str, kind: ResourceKind, name: str, *, actor: str | None = None) -> None:
        if kind not in KINDS:
            raise InvalidRequestError(f"resource kind must be one of {', '.join(KINDS)}, not '{kind}'", param="kind")
        if not name:
            raise InvalidRequestError("an exposure needs a resource name ('*' for all)", param="name")
        row = self._agent(agent)
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO agent_exposures (agent_id, resource_kind, resource_name) "
                         "VALUES (?, ?, ?)", (row["id"], kind, name))
            if self.audit is not None:
                self.audit.append_in(conn, "identity.changed", actor,
                                     {"agent": row["name"], "exposed": {"kind": kind, "name": name}})

    def unexpose(self, agent: str, kind: ResourceKind, name: str, *, actor: str | None = None) -> None:
        row = self._agent(agent)
        with self.db.transaction() as conn:
            cursor = conn.execute("DELETE FROM agent_exposures WHERE agent_id = ? AND resource_kind = ? "
                                  "AND resource_name = ?", (row["id"], kind, name))
            if cursor.rowcount == 0:
                raise NotFoundError(f"{kind} '{name}' is not exposed to '{agent}'")
            if self.audit is not None:
                self.audit.append_in(conn, "identity.changed", actor,
                                     {"agent": row["name"], "unexposed": {"kind": kind, "name": name}})

    def exposures(self, agent: str) -> list[tuple[str, str]]:
        return self._exposures_of(self._agent(agent)["id"])

    def _exposures_of(self, agent_id: str) -> list[tuple[str, str]]:
        rows = self.db.query("SELECT resource_kind, resource_name FROM agent_exposures WHERE agent_id = ? "
                             "ORDER BY resource_kind, resource_name", (agent_id,))
        return [(r[0], r[1]) for r in rows]

    def access_for(self, identity: str) -> Access:
        """The ``Access`` of any identity (humans and private agents: unrestricted)."""
        row = self.db.query_one("SELECT * FROM identities WHERE name = ? OR id = ?", (identity, identity))
        if row is None:
            raise NotFoundError(f"identity '{identity}' does not exist")
        exposures = self._exposures_of(row["id"]) if row["kind"] == "agent" else []
        return decide_access(dict(row), exposures)
