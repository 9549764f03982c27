"""Governance API: keys, identities, exposures, caps, the audit log and the caller's own spend.

Every route runs after ``authenticate`` (mounted with it by ``create_app``); each then calls
``authorize`` with the role it needs. Key secrets appear once, in the answer to ``POST /v1/keys``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sovereign.errors import PermissionDeniedError
from sovereign.governance.audit import AuditLog
from sovereign.governance.authz import authorize
from sovereign.governance.keys import Principal, Scopes
from sovereign.governance.spend import SpendGuard
from sovereign.governance.visibility import VisibilityStore

router = APIRouter()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(_Body):
    identity: str | None = Field(default=None, description="identity name or id; default: the caller")
    name: str = "default"
    models: list[str] | None = None
    tools: list[str] | None = None
    agents: list[str] | None = None
    max_spend_usd: float | None = Field(default=None, ge=0)
    expires: str | None = Field(default=None, description="duration (30d, 12h) or ISO date/time")


class IdentityCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["human", "agent"] = "human"
    role: Literal["admin", "operator", "viewer"] = "operator"
    owner: str | None = None
    public: bool = False


class IdentityUpdate(_Body):
    role: Literal["admin", "operator", "viewer"] | None = None
    public: bool | None = None


class Exposure(_Body):
    kind: Literal["memory", "kb", "workspace", "tool"]
    name: str = Field(min_length=1)


class CapSet(_Body):
    scope: Literal["key", "agent", "owner", "global"]
    subject: str | None = None
    period: Literal["day", "total"] = "day"
    max_usd: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)


# --- services ----------------------------------------------------------------------------


def _principal(request: Request) -> Principal:
    return request.state.principal


def _services(request: Request):
    return request.app.state.services


def _audit(request: Request) -> AuditLog:
    services = _services(request)
    found = getattr(services, "audit", None)
    if found is None:
        found = getattr(request.app.state, "governance_audit", None)
        if found is None:
            found = request.app.state.governance_audit = AuditLog(services.db)
    return found


def _spend(request: Request) -> SpendGuard:
    services = _services(request)
    found = getattr(services, "spend", None)
    if found is None:
        found = getattr(request.app.state, "governance_spend", None)
        if found is None:
            found = request.app.state.governance_spend = SpendGuard(services.db, audit=_audit(request))
    return found


def _visibility(request: Request) -> VisibilityStore:
    services = _services(request)
    found = getattr(services, "visibility", None)
    if found is None:
        found = getattr(request.app.state, "governance_visibility", None)
        if found is None:
            found = request.app.state.governance_visibility = VisibilityStore(services.db, audit=_audit(request))
    return found


def _actor(principal: Principal) -> str:
    return f"{principal.identity_name} ({principal.key_id})"


def _keys(request: Request):
    keys = _services(request).keys
    if keys.audit is None:
        keys.audit = _audit(request)
    return keys


# --- keys --------------------------------------------------------------------------------


@router.post("/v1/keys", status_code=201)
async def create_key(body: KeyCreate, request: Request):
    """Create a key; the secret is in this answer and nowhere else, ever. Admins may create keys
    for anyone; others only for themselves, never wider than their own key."""
    principal = _principal(request)
    keys = _keys(request)
    target = keys.identity(body.identity or principal.identity_id)
    if target["id"] != principal.identity_id:
        authorize(principal, action="admin")
    else:
        authorize(principal, action="read")
        _no_wider_than(principal.scopes, body)
    scopes = Scopes(models=body.models, tools=body.tools, agents=body.agents, max_spend_usd=body.max_spend_usd)
    key_id, secret = keys.create_key(target["id"], name=body.name, scopes=scopes, expires_at=body.expires,
                                     actor=_actor(principal))
    return {"id": key_id, "key": secret, "identity": target["name"], "name": body.name,
            "scopes": scopes.to_dict(), "expires_at": keys.key(key_id)["expires_at"],
            "note": "store this key now: it is not kept and cannot be shown again"}


def _no_wider_than(own: Scopes, body: KeyCreate) -> None:
    for field, mine in (("models", own.models), ("tools", own.tools), ("agents", own.agents)):
        asked = getattr(body, field)
        if mine is not None and (asked is None or not set(asked) <= set(mine)):
            raise PermissionDeniedError(f"a new key may not have wider {field} than the key creating it",
                                        code="scope_escalation", param=field)
    if own.max_spend_usd is not None and (body.max_spend_usd is None or body.max_spend_usd > own.max_spend_usd):
        raise PermissionDeniedError("a new key may not have a higher max_spend_usd than the key creating it",
                                    code="scope_escalation", param="max_spend_usd")


def _key_row(row: dict) -> dict:
    out = dict(row)
    out["scopes"] = Scopes.from_json(out["scopes"]).to_dict()
    out["active"] = out.get("revoked_at") is None
    return out


@router.get("/v1/keys")
async def list_keys(request: Request):
    """Admins see every key; others their own identity's keys. Secrets are never listed."""
    principal = authorize(_principal(request), action="read")
    keys = _keys(request)
    rows = keys.list_keys() if principal.role == "admin" else keys.list_keys(identity=principal.identity_id)
    return {"object": "list", "data": [_key_row(r) for r in rows]}


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, request: Request):
    """Revoke a key with immediate effect (admins: any key; others: their own)."""
    principal = authorize(_principal(request), action="read")
    keys = _keys(request)
    row = keys.key(key_id)
    if row["identity_id"] != principal.identity_id:
        authorize(principal, action="admin")
    keys.revoke(key_id, actor=_actor(principal))
    return {"id": key_id, "revoked": True}


# --- identities --------------------------------------------------------------------------


@router.get("/v1/identities")
async def list_identities(request: Request):
    principal = authorize(_principal(request), action="read")
    rows = _keys(request).list_identities()
    if principal.role != "admin":
        rows = [r for r in rows if r["id"] == principal.identity_id]
    return {"object": "list", "data": rows}


@router.post("/v1/identities", status_code=201)
async def create_identity(body: IdentityCreate, request: Request):
    principal = authorize(_principal(request), action="admin")
    keys = _keys(request)
    identity_id = keys.create_identity(body.name, kind=body.kind, role=body.role, owner=body.owner,
                                       public=body.public, actor=_actor(principal))
    return keys.identity(identity_id) | {"public": body.public}


@router.patch("/v1/identities/{name}")
async def update_identity(name: str, body: IdentityUpdate, request: Request):
    principal = authorize(_principal(request), action="admin")
    row = _keys(request).update_identity(name, role=body.role, public=body.public, actor=_actor(principal))
    return row | {"public": bool(row["public"])}


@router.get("/v1/identities/{agent}/exposures")
async def list_exposures(agent: str, request: Request):
    _owner_or_admin(request, agent)
    return {"object": "list", "data": [{"kind": k, "name": n} for k, n in _visibility(request).exposures(agent)]}


@router.post("/v1/identities/{agent}/exposures", status_code=201)
async def expose(agent: str, body: Exposure, request: Request):
    principal = _owner_or_admin(request, agent)
    _visibility(request).expose(agent, body.kind, body.name, actor=_actor(principal))
    return {"agent": agent, "kind": body.kind, "name": body.name, "exposed": True}


@router.delete("/v1/identities/{agent}/exposures/{kind}/{name}")
async def unexpose(agent: str, kind: Literal["memory", "kb", "workspace", "tool"], name: str, request: Request):
    principal = _owner_or_admin(request, agent)
    _visibility(request).unexpose(agent, kind, name, actor=_actor(principal))
    return {"agent": agent, "kind": kind, "name": name, "exposed": False}


def _owner_or_admin(request: Request, agent: str) -> Principal:
    """Only an agent's owner (or an admin) decides what the agent may see."""
    principal = authorize(_principal(request), action="read")
    row = _keys(request).identity(agent)
    if principal.role != "admin" and row.get("owner_id") != principal.identity_id:
        raise PermissionDeniedError(f"only the owner of '{agent}' or an admin may change what it can see",
                                    code="not_owner")
    return principal


# --- audit -------------------------------------------------------------------------------


@router.get("/v1/audit/verify")
async def audit_verify(request: Request):
    authorize(_principal(request), action="admin")
    return _audit(request).verify().to_dict()


@router.get("/v1/audit")
async def audit_entries(request: Request, since: int = Query(default=0, ge=0, le=2**63 - 1),
                        kind: str | None = None, limit: int = Query(default=100, ge=1, le=1000)):
    authorize(_principal(request), action="admin")
    entries = _audit(request).entries(since_seq=since, kind=kind, limit=limit)
    return {"object": "list", "data": [e.to_dict() for e in entries]}


# --- spend -------------------------------------------------------------------------------


@router.get("/v1/spend")
async def own_spend(request: Request):
    """The caller's own spend (today, total) and what remains under every cap that applies."""
    principal = authorize(_principal(request), action="read")
    status = _spend(request).status(key_id=principal.key_id, owner_id=principal.spend_owner_id,
                                    agent_id=principal.agent_id)
    return {"identity": principal.identity_name, "key_id": principal.key_id, **status.to_dict()}


@router.get("/v1/spend/caps")
async def list_caps(request: Request):
    authorize(_principal(request), action="admin")
    return {"object": "list", "data": [
        {"scope": c.scope, "subject": c.subject, "period": c.period, "max_usd": c.max_usd,
         "max_tokens": c.max_tokens} for c in _spend(request).caps()]}


@router.put("/v1/spend/caps")
async def set_cap(body: CapSet, request: Request):
    principal = authorize(_principal(request), action="admin")
    subject = body.subject
    if body.scope in ("agent", "owner") and subject:
        subject = _keys(request).identity(subject)["id"]  # caps are kept by identity id
    cap = _spend(request).set_cap(body.scope, subject, body.period, max_usd=body.max_usd,
                                  max_tokens=body.max_tokens, actor=_actor(principal))
    return {"scope": cap.scope, "subject": cap.subject, "period": cap.period, "max_usd": cap.max_usd,
            "max_tokens": cap.max_tokens}
