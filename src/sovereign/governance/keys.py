"""Identities and API keys: keys belong to an identity, carry scopes and an expiry, are stored
hashed, shown once at creation, and revocable with immediate effect."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sovereign.errors import AuthenticationError, InvalidRequestError, NotFoundError
from sovereign.store import Database

if TYPE_CHECKING:
    from sovereign.governance.audit import AuditLog

Role = Literal["admin", "operator", "viewer"]
Kind = Literal["human", "agent"]
KEY_PREFIX = "sk-sov-"

MIGRATIONS = [
    """
    CREATE TABLE identities (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL CHECK (kind IN ('human', 'agent')),
        role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        owner_id   TEXT REFERENCES identities(id),
        public     INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        CHECK ((kind = 'agent') = (owner_id IS NOT NULL))
    );
    CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,
        identity_id TEXT NOT NULL REFERENCES identities(id),
        key_hash    TEXT NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        name        TEXT NOT NULL,
        scopes      TEXT NOT NULL,
        expires_at  TEXT,
        revoked_at  TEXT,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    """
]


@dataclass(slots=True)
class Scopes:
    """What a key may do; ``None`` means unrestricted for that dimension."""

    models: list[str] | None = None
    tools: list[str] | None = None
    agents: list[str] | None = None
    max_spend_usd: float | None = None

    def allows_model(self, name: str) -> bool:
        return _allows(self.models, name)

    def allows_tool(self, name: str) -> bool:
        return _allows(self.tools, name)

    def allows_agent(self, name: str) -> bool:
        return _allows(self.agents, name)

    def to_dict(self) -> dict:
        return {"models": self.models, "tools": self.tools, "agents": self.agents,
                "max_spend_usd": self.max_spend_usd}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Scopes:
        data = json.loads(text)
        return cls(**{key: data.get(key) for key in ("models", "tools", "agents", "max_spend_usd")})


def _allows(allowed: list[str] | None, name: str) -> bool:
    """``None`` allows everything; otherwise an exact name or a glob (``qwen*``) must match."""
    return allowed is None or any(name == item or fnmatch.fnmatchcase(name, item) for item in allowed)


@dataclass(slots=True)
class Principal:
    """Who is calling: the identity behind a valid key, with the key's scopes."""

    identity_id: str
    identity_name: str
    role: Role
    key_id: str
    scopes: Scopes = field(default_factory=Scopes)
    kind: Kind = "human"
    owner_id: str | None = None  # the human owner when the caller is an agent

    @property
    def spend_owner_id(self) -> str:
        """The human whose owner-level caps this caller's spend counts against."""
        return self.owner_id or self.identity_id

    @property
    def agent_id(self) -> str | None:
        return self.identity_id if self.kind == "agent" else None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str | None, *, now: datetime | None = None) -> str | None:
    """An expiry as stored (UTC, microseconds): from ``30d``/``12h``/``15m``/``2w``/``90s`` or an
    ISO date/time (naive means UTC); ``None``, ``""`` and ``never`` mean no expiry."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "never":
        return None
    text = str(text).strip()
    match = _DURATION.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return _stamp((now or datetime.now(UTC)) + delta)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequestError(
            f"invalid expiry '{text}': use a duration like 30d, 12h, 15m or an ISO date/time",
            param="expires_at",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _stamp(moment)


class KeyStore:
    """Identities and API keys. With ``audit`` set, every change and refusal is audited in the
    same transaction as the change itself."""

    def __init__(self, db: Database, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit
        db.migrate("keys", MIGRATIONS)

    def _record(self, conn, kind: str, actor: str | None, data: dict) -> None:
        if self.audit is not None:
            self.audit.append_in(conn, kind, actor, data)

    # --- identities ---------------------------------------------------------------------

    def create_identity(
        self, name: str, *, kind: Kind = "human", role: Role = "operator", owner: str | None = None,
        public: bool = False, actor: str | None = None,
    ) -> str:
        if not name or not name.strip():
            raise InvalidRequestError("an identity needs a name", param="name")
        if kind not in ("human", "agent"):
            raise InvalidRequestError(f"kind must be 'human' or 'agent', not '{kind}'", param="kind")
        if role not in ("admin", "operator", "viewer"):
            raise InvalidRequestError(f"role must be admin, operator or viewer, not '{role}'", param="role")
        if kind == "human" and owner is not None:
            raise InvalidRequestError(f"'{name}' is a human; only agents have an owner", param="owner")
        if kind == "agent" and owner is None:
            raise InvalidRequestError(f"agent '{name}' needs a human owner", param="owner")
        owner_id = None
        if owner is not None:
            row = self.db.query_one("SELECT id, kind FROM identities WHERE name = ? OR id = ?", (owner, owner))
            if row is None:
                raise NotFoundError(f"owner '{owner}' does not exist", param="owner")
            if row["kind"] != "human":
                raise InvalidRequestError(f"owner '{owner}' is an agent; an agent's owner must be a human", param="owner")
            owner_id = row["id"]
        if self.db.query_one("SELECT 1 FROM identities WHERE name = ?", (name,)):
            raise InvalidRequestError(f"identity '{name}' already exists", param="name")
        identity_id = "id_" + uuid.uuid4().hex[:16]
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO identities (id, name, kind, role, owner_id, public) VALUES (?, ?, ?, ?, ?, ?)",
                (identity_id, name, kind, role, owner_id, int(public)),
            )
            self._record(conn, "identity.created", actor, {
                "identity_id": identity_id, "name": name, "kind": kind, "role": role,
                "owner_id": owner_id, "public": bool(public)})
        return identity_id

    def list_identities(self) -> list[dict]:
        rows = self.db.query(
            "SELECT i.id, i.name, i.kind, i.role, o.name AS owner, i.public, i.created_at "
            "FROM identities i LEFT JOIN identities o ON o.id = i.owner_id ORDER BY i.created_at, i.name"
        )
        return [dict(row) | {"public": bool(row["public"])} for row in rows]

    def update_identity(
        self, name_or_id: str, *, role: Role | None = None, public: bool | None = None,
        actor: str | None = None,
    ) -> dict:
        """Change an identity's role or public flag (audited); returns the updated row."""
        current = self.identity(name_or_id)
        if role is not None and role not in ("admin", "operator", "viewer"):
            raise InvalidRequestError(f"role must be admin, operator or viewer, not '{role}'", param="role")
        changes = {k: v for k, v in (("role", role), ("public", public)) if v is not None}
        if not changes:
            return current
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE identities SET role = COALESCE(?, role), public = COALESCE(?, public) WHERE id = ?",
                (role, None if public is None else int(public), current["id"]),
            )
            self._record(conn, "identity.changed", actor, {"identity_id": current["id"],
                                                           "name": current["name"], **changes})
        return self.identity(current["id"])

    def identity(self, name_or_id: str) -> dict:
        row = self.db.query_one("SELECT * FROM identities WHERE name = ? OR id = ?", (name_or_id, name_or_id))
        if row is None:
            raise NotFoundError(f"identity '{name_or_id}' does not exist")
        return dict(row)

    def ensure_admin(self, name: str = "local-admin") -> str:
        row = self.db.query_one("SELECT id FROM identities WHERE name = ?", (name,))
        return row["id"] if row else self.create_identity(name, kind="human", role="admin")

    def local_principal(self, name: str = "local-admin") -> Principal:
        """The person at this machine: the local admin identity (the one first start creates;
        created here if missing), with no key and no scopes. The CLI and the stdio MCP server act
        as this principal; runs, memories, approvals and spend carry its identity id."""
        return self.principal_for(self.ensure_admin(name))

    def principal_for(self, name_or_id: str) -> Principal:
        """An identity acting without a key (no scopes): the local admin, or the owner a library
        caller names on an agent. ``NotFoundError`` if there is no such identity."""
        row = self.identity(name_or_id)
        return Principal(identity_id=row["id"], identity_name=row["name"], role=row["role"], key_id="",
                         kind=row["kind"], owner_id=row["owner_id"])

    # --- keys ---------------------------------------------------------------------------------

    def create_key(
        self, identity: str, *, name: str = "default", scopes: Scopes | None = None,
        expires_at: str | None = None, secret: str | None = None, actor: str | None = None,
    ) -> tuple[str, str]:
        """Create a key for ``identity``; returns ``(key_id, secret)`` — the secret is not kept."""
        owner = self.identity(identity)
        scopes = scopes or Scopes()
        if scopes.max_spend_usd is not None and scopes.max_spend_usd < 0:
            raise InvalidRequestError("max_spend_usd must be zero or more", param="max_spend_usd")
        expires_at = parse_expiry(expires_at)
        secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + uuid.uuid4().hex[:16]
        if self.db.query_one("SELECT 1 FROM api_keys WHERE key_hash = ?", (hash_key(secret),)):
            raise InvalidRequestError("that API key is already registered", param="api_key")
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, identity_id, key_hash, prefix, name, scopes, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, owner["id"], hash_key(secret), secret[:10], name, scopes.to_json(), expires_at),
            )
            self._record(conn, "key.created", actor, {
                "key_id": key_id, "identity": owner["name"], "name": name, "scopes": scopes.to_dict(),
                "expires_at": expires_at})
        return key_id, secret

    def key(self, key_id: str) -> dict:
        row = self.db.query_one(
            "SELECT k.id, k.name, k.prefix, k.identity_id, i.name AS identity, k.scopes, k.expires_at, "
            "k.revoked_at, k.created_at FROM api_keys k JOIN identities i ON i.id = k.identity_id WHERE k.id = ?",
            (key_id,),
        )
        if row is None:
            raise NotFoundError(f"API key '{key_id}' does not exist")
        return dict(row)

    def has_keys(self) -> bool:
        return self.db.query_one("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1") is not None

    def revoke(self, key_id: str, *, actor: str | None = None) -> None:
        """Revoke a key; the next request with it is refused (nothing is cached)."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id)
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"API key '{key_id}' does not exist or is already revoked")
            self._record(conn, "key.revoked", actor, {"key_id": key_id})

    def list_keys(self, *, identity: str | None = None) -> list[dict]:
        """Every key (never its secret or hash), optionally only those of one identity."""
        sql = ("SELECT k.id, k.name, k.prefix, i.name AS identity, k.scopes, k.expires_at, k.revoked_at, "
               "k.created_at FROM api_keys k JOIN identities i ON i.id = k.identity_id")
        params: tuple = ()
        if identity is not None:
            sql += " WHERE i.id = ? OR i.name = ?"
            params = (identity, identity)
        return [dict(row) for row in self.db.query(sql + " ORDER BY k.created_at", params)]

    def authenticate(self, secret: str | None) -> Principal:
        """The principal behind ``secret``; raises ``AuthenticationError`` saying what is wrong."""
        if not secret:
            raise self._refuse(AuthenticationError("missing API key: send 'Authorization: Bearer <key>'",
                                                   code="missing_api_key"), None)
        row = self.db.query_one(
            "SELECT k.id, k.scopes, k.expires_at, k.revoked_at, i.id AS identity_id, i.name, i.role, "
            "i.kind, i.owner_id FROM api_keys k JOIN identities i ON i.id = k.identity_id WHERE k.key_hash = ?",
            (hash_key(secret),),
        )
        if row is None:
            raise self._refuse(AuthenticationError("invalid API key"), None)
        if row["revoked_at"] is not None:
            raise self._refuse(AuthenticationError("API key has been revoked", code="api_key_revoked"), row["id"])
        if row["expires_at"] is not None and row["expires_at"] <= _now():
            raise self._refuse(AuthenticationError("API key has expired", code="api_key_expired"), row["id"])
        return Principal(
            identity_id=row["identity_id"], identity_name=row["name"], role=row["role"],
            key_id=row["id"], scopes=Scopes.from_json(row["scopes"]), kind=row["kind"],
            owner_id=row["owner_id"],
        )

    def _refuse(self, error: AuthenticationError, key_id: str | None) -> AuthenticationError:
        if self.audit is not None:
            self.audit.append("auth.refused", None, {"code": error.code, "reason": error.message,
                                                     "key_id": key_id})
        return error
