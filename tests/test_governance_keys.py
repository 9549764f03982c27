"""Identities, API keys and authorisation at the library level: the auth matrix (no key, wrong
key, expired, revoked, out of scope, wrong role), agents need a human owner, changes are audited."""

from __future__ import annotations

import pytest

from sovereign.errors import AuthenticationError, InvalidRequestError, NotFoundError, PermissionDeniedError
from sovereign.governance.audit import AuditLog
from sovereign.governance.authz import authorize, can
from sovereign.governance.keys import KeyStore, Scopes, parse_expiry
from sovereign.store import Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "keys.db")
    yield database
    database.close()


@pytest.fixture
def audit(db):
    return AuditLog(db)


@pytest.fixture
def keys(db, audit):
    store = KeyStore(db, audit=audit)
    store.ensure_admin()
    store.create_identity("alice", kind="human", role="operator", actor="local-admin")
    store.create_identity("victor", kind="human", role="viewer")
    store.create_identity("helper", kind="agent", role="operator", owner="alice")
    return store


def test_agent_needs_a_human_owner(keys):
    with pytest.raises(InvalidRequestError, match="needs a human owner"):
        keys.create_identity("orphan", kind="agent")
    with pytest.raises(InvalidRequestError, match="must be a human"):
        keys.create_identity("sub", kind="agent", owner="helper")
    with pytest.raises(NotFoundError):
        keys.create_identity("ghost-owned", kind="agent", owner="nobody")
    with pytest.raises(InvalidRequestError, match="role"):
        keys.create_identity("x", role="root")  # type: ignore[arg-type]


def test_secret_shown_once_and_stored_hashed(keys, db):
    key_id, secret = keys.create_key("alice")
    assert secret.startswith("sk-sov-")
    dump = "\n".join(str(tuple(r)) for r in db.query("SELECT * FROM api_keys"))
    assert secret not in dump
    assert all(secret not in str(row) for row in keys.list_keys())
    audit_dump = "\n".join(r["data"] for r in db.query("SELECT data FROM audit_log"))
    assert secret not in audit_dump and key_id in audit_dump


def test_no_key_is_refused(keys):
    with pytest.raises(AuthenticationError) as err:
        keys.authenticate(None)
    assert err.value.status_code == 401 and err.value.code == "missing_api_key"


def test_wrong_key_is_refused(keys):
    keys.create_key("alice")
    with pytest.raises(AuthenticationError) as err:
        keys.authenticate("sk-sov-not-a-real-key")
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"


def test_expired_key_is_refused(keys):
    _, secret = keys.create_key("alice", expires_at="2020-01-01T00:00:00Z")
    with pytest.raises(AuthenticationError) as err:
        keys.authenticate(secret)
    assert err.value.status_code == 401 and err.value.code == "api_key_expired"


def test_revoked_key_is_refused_immediately(keys, audit):
    key_id, secret = keys.create_key("alice")
    assert keys.authenticate(secret).identity_name == "alice"
    keys.revoke(key_id, actor="local-admin")
    with pytest.raises(AuthenticationError) as err:
        keys.authenticate(secret)
    assert err.value.status_code == 401 and err.value.code == "api_key_revoked"
    kinds = [e.kind for e in audit.entries()]
    assert "key.revoked" in kinds and kinds[-1] == "auth.refused"
    with pytest.raises(NotFoundError):
        keys.revoke(key_id)


def test_future_expiry_and_durations(keys):
    _, secret = keys.create_key("alice", expires_at="30d")
    assert keys.authenticate(secret).identity_name == "alice"
    assert parse_expiry("never") is None
    assert parse_expiry("2031-05-01").startswith("2031-05-01T00:00:00")
    with pytest.raises(InvalidRequestError, match="invalid expiry"):
        parse_expiry("next tuesday")


def test_principal_of_an_agent_knows_its_owner(keys):
    _, secret = keys.create_key("helper")
    principal = keys.authenticate(secret)
    alice = keys.identity("alice")
    assert principal.kind == "agent" and principal.owner_id == alice["id"]
    assert principal.spend_owner_id == alice["id"] and principal.agent_id == principal.identity_id


def test_out_of_scope_model_tool_agent_are_refused(keys):
    scopes = Scopes(models=["qwen*"], tools=["calculator"], agents=["helper"])
    _, secret = keys.create_key("alice", scopes=scopes)
    p = keys.authenticate(secret)
    authorize(p, model="qwen2.5-coder-0.5b-instruct", tool="calculator", agent="helper")
    for what, code in (({"model": "gpt-4o"}, "model_not_in_scope"), ({"tool": "shell"}, "tool_not_in_scope"),
                       ({"agent": "other"}, "agent_not_in_scope")):
        with pytest.raises(PermissionDeniedError) as err:
            authorize(p, **what)
        assert err.value.status_code == 403 and err.value.code == code
        assert next(iter(what.values())) in err.value.message


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [("viewer", "read", True), ("viewer", "use", False), ("viewer", "admin", False),
     ("operator", "read", True), ("operator", "use", True), ("operator", "admin", False),
     ("admin", "read", True), ("admin", "use", True), ("admin", "admin", True)],
)
def test_role_matrix(keys, role, action, allowed):
    name = {"viewer": "victor", "operator": "alice", "admin": "local-admin"}[role]
    _, secret = keys.create_key(name)
    principal = keys.authenticate(secret)
    assert can(principal, action=action) is allowed
    if not allowed:
        with pytest.raises(PermissionDeniedError) as err:
            authorize(principal, action=action)
        assert err.value.code == "insufficient_role" and role in err.value.message


def test_identity_changes_are_audited(keys, audit):
    keys.update_identity("helper", public=True, actor="alice")
    assert keys.identity("helper")["public"] == 1
    changed = audit.entries(kind="identity.changed")
    assert changed and changed[-1].data["public"] is True and changed[-1].actor == "alice"
    assert {e.kind for e in audit.entries()} >= {"identity.created", "identity.changed"}
    assert audit.verify().ok
