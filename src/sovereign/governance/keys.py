"""Identities and API keys: keys belong to an identity, carry scopes and an expiry, are stored
hashed, shown once at creation, and revocable with immediate effect."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sovereign.errors import AuthenticationError, InvalidRequestError, NotFoundError
from sovereign.store import Database

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
        return self.models is None or name in self.models

    def to_json(self) -> str:
        return json.dumps({"models": self.models, "tools": self.tools, "agents": self.agents,
                           "max_spend_usd": self.max_spend_usd})

    @classmethod
    def from_json(cls, text: str) -> Scopes:
        return cls(**json.loads(text))


@dataclass(slots=True)
class Principal:
    """Who is calling: the identity behind a valid key, with the key's scopes."""

    identity_id: str
    identity_name: str
    role: Role
    key_id: str
    scopes: Scopes = field(default_factory=Scopes)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("keys", MIGRATIONS)

    # --- identities ---------------------------------------------------------------------

    def create_identity(
        self, name: str, *, kind: Kind = "human", role: Role = "operator", owner: str | None = None,
        public: bool = False,
    ) -> str:
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
        self.db.execute(
            "INSERT INTO identities (id, name, kind, role, owner_id, public) VALUES (?, ?, ?, ?, ?, ?)",
            (identity_id, name, kind, role, owner_id, int(public)),
        )
        return identity_id

    def identity(self, name_or_id: str) -> dict:
        row = self.db.query_one("SELECT * FROM identities WHERE name = ? OR id = ?", (name_or_id, name_or_id))
        if row is None:
            raise NotFoundError(f"identity '{name_or_id}' does not exist")
        return dict(row)

    def ensure_admin(self, name: str = "local-admin") -> str:
        row = self.db.query_one("SELECT id FROM identities WHERE name = ?", (name,))
        return row["id"] if row else self.create_identity(name, kind="human", role="admin")

    # --- keys ---------------------------------------------------------------------------------

    def create_key(
        self, identity: str, *, name: str = "default", scopes: Scopes | None = None,
        expires_at: str | None = None, secret: str | None = None,
    ) -> tuple[str, str]:
        """Create a key for ``identity``; returns ``(key_id, secret)`` — the secret is not kept."""
        owner = self.identity(identity)
        secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + uuid.uuid4().hex[:16]
        if self.db.query_one("SELECT 1 FROM api_keys WHERE key_hash = ?", (hash_key(secret),)):
            raise InvalidRequestError("that API key is already registered", param="api_key")
        self.db.execute(
            "INSERT INTO api_keys (id, identity_id, key_hash, prefix, name, scopes, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, owner["id"], hash_key(secret), secret[:10], name, (scopes or Scopes()).to_json(), expires_at),
        )
        return key_id, secret

    def has_keys(self) -> bool:
        return self.db.query_one("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1") is not None

    def revoke(self, key_id: str) -> None:
        cursor = self.db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id)
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"API key '{key_id}' does not exist or is already revoked")

    def list_keys(self) -> list[dict]:
        rows = self.db.query(
            "SELECT k.id, k.name, k.prefix, i.name AS identity, k.scopes, k.expires_at, k.revoked_at, "
            "k.created_at FROM api_keys k JOIN identities i ON i.id = k.identity_id ORDER BY k.created_at"
        )
        return [dict(row) for row in rows]

    def authenticate(self, secret: str | None) -> Principal:
        """The principal behind ``secret``; raises ``AuthenticationError`` saying what is wrong."""
        if not secret:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        row = self.db.query_one(
            "SELECT k.id, k.scopes, k.expires_at, k.revoked_at, i.id AS identity_id, i.name, i.role "
            "FROM api_keys k JOIN identities i ON i.id = k.identity_id WHERE k.key_hash = ?",
            (hash_key(secret),),
        )
        if row is None:
            raise AuthenticationError("invalid API key")
        if row["revoked_at"] is not None:
            raise AuthenticationError("API key has been revoked", code="api_key_revoked")
        if row["expires_at"] is not None and row["expires_at"] <= _now():
            raise AuthenticationError("API key has expired", code="api_key_expired")
        return Principal(
            identity_id=row["identity_id"], identity_name=row["name"], role=row["role"],
            key_id=row["id"], scopes=Scopes.from_json(row["scopes"]),
        )
