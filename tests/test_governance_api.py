"""Governance over HTTP through the real app (``create_app``): the auth matrix (no key, wrong
key, expired, revoked, out of scope, wrong role) with the right status for each, keys shown
once, identities, caps and the caller's own spend, audit verify."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sovereign.config import load_settings
from sovereign.governance.audit import AuditLog
from sovereign.governance.keys import Scopes
from sovereign.governance.spend import SpendGuard
from sovereign.server.app import create_app
from sovereign.services import Services


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = Services.open(load_settings(home))
    keys = services.keys
    keys.audit = AuditLog(services.db)
    admin = keys.ensure_admin()
    keys.create_identity("alice", role="operator")
    keys.create_identity("victor", role="viewer")
    keys.create_identity("helper", kind="agent", owner="alice")
    secrets = {
        "admin": keys.create_key(admin)[1],
        "alice": keys.create_key("alice")[1],
        "victor": keys.create_key("victor")[1],
        "helper": keys.create_key("helper")[1],
        "narrow": keys.create_key("alice", scopes=Scopes(models=["only-this-model"]))[1],
        "expired": keys.create_key("alice", expires_at="2021-01-01T00:00:00Z")[1],
    }
    revoked_id, secrets["revoked"] = keys.create_key("alice")
    keys.revoke(revoked_id)
    with TestClient(create_app(services, preload=False)) as client:
        yield client, services, secrets
    services.close()


def auth(secret: str | None) -> dict:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("who", "method", "path", "status", "code"),
    [
        (None, "get", "/v1/spend", 401, "missing_api_key"),
        ("wrong", "get", "/v1/spend", 401, "invalid_api_key"),
        ("expired", "get", "/v1/spend", 401, "api_key_expired"),
        ("revoked", "get", "/v1/spend", 401, "api_key_revoked"),
        (None, "post", "/v1/chat/completions", 401, "missing_api_key"),
        ("revoked", "post", "/v1/chat/completions", 401, "api_key_revoked"),
        ("narrow", "post", "/v1/chat/completions", 403, None),  # model out of scope
        ("victor", "get", "/v1/audit/verify", 403, "insufficient_role"),
        ("alice", "get", "/v1/audit/verify", 403, "insufficient_role"),
        ("alice", "post", "/v1/identities", 403, "insufficient_role"),
        ("victor", "put", "/v1/spend/caps", 403, "insufficient_role"),
        ("admin", "get", "/v1/audit/verify", 200, None),
        ("victor", "get", "/v1/spend", 200, None),
    ],
)
def test_auth_matrix_over_http(env, who, method, path, status, code):
    client, _, secrets = env
    secret = {"wrong": "sk-sov-wrong-wrong-wrong"}.get(who, secrets.get(who)) if who else None
    body = {"post": CHAT if "chat" in path else {"name": "x"}, "put": {"scope": "global", "max_usd": 1}}.get(method)
    kwargs = {"json": body} if body is not None else {}
    reply = getattr(client, method)(path, headers=auth(secret), **kwargs)
    assert reply.status_code == status, reply.text
    if status >= 400:
        error = reply.json()["error"]
        assert error["message"]
        if code:
            assert error["code"] == code


def test_key_lifecycle_over_http(env):
    client, services, secrets = env
    made = client.post("/v1/keys", headers=auth(secrets["admin"]),
                       json={"identity": "alice", "name": "ci", "models": ["qwen*"], "max_spend_usd": 2, "expires": "7d"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["key"].startswith("sk-sov-") and key["scopes"]["models"] == ["qwen*"] and key["expires_at"]
    listed = client.get("/v1/keys", headers=auth(secrets["admin"])).json()["data"]
    assert key["id"] in {k["id"] for k in listed}
    assert key["key"] not in str(listed)
    assert client.get("/v1/spend", headers=auth(key["key"])).status_code == 200
    # Revocation has immediate effect.
    assert client.delete(f"/v1/keys/{key['id']}", headers=auth(secrets["admin"])).status_code == 200
    again = client.get("/v1/spend", headers=auth(key["key"]))
    assert again.status_code == 401 and again.json()["error"]["code"] == "api_key_revoked"
    assert key["key"] not in services.db.query_one("SELECT group_concat(data) FROM audit_log")[0]


def test_non_admin_keys_are_their_own_and_never_wider(env):
    client, _, secrets = env
    mine = client.get("/v1/keys", headers=auth(secrets["alice"])).json()["data"]
    assert mine and {k["identity"] for k in mine} == {"alice"}
    assert client.post("/v1/keys", headers=auth(secrets["alice"]), json={"identity": "victor"}).status_code == 403
    assert client.post("/v1/keys", headers=auth(secrets["alice"]), json={}).status_code == 201
    narrow = client.post("/v1/keys", headers=auth(secrets["narrow"]), json={})
    assert narrow.status_code == 403 and narrow.json()["error"]["code"] == "scope_escalation"
    admin_key = client.get("/v1/keys", headers=auth(secrets["admin"])).json()["data"][0]["id"]
    assert client.delete(f"/v1/keys/{admin_key}", headers=auth(secrets["alice"])).status_code == 403


def test_identities_over_http(env):
    client, _, secrets = env
    admin = auth(secrets["admin"])
    orphan = client.post("/v1/identities", headers=admin, json={"name": "orphan", "kind": "agent"})
    assert orphan.status_code == 400 and "owner" in orphan.json()["error"]["message"]
    made = client.post("/v1/identities", headers=admin,
                       json={"name": "concierge", "kind": "agent", "owner": "alice", "public": True})
    assert made.status_code == 201 and made.json()["public"] is True
    names = {i["name"] for i in client.get("/v1/identities", headers=admin).json()["data"]}
    assert {"alice", "victor", "helper", "concierge", "local-admin"} <= names
    # The owner exposes a tool to the public agent; a stranger may not.
    assert client.post("/v1/identities/concierge/exposures", headers=auth(secrets["alice"]),
                       json={"kind": "tool", "name": "calculator"}).status_code == 201
    assert client.post("/v1/identities/concierge/exposures", headers=auth(secrets["victor"]),
                       json={"kind": "tool", "name": "shell"}).status_code == 403
    exposures = client.get("/v1/identities/concierge/exposures", headers=admin).json()["data"]
    assert exposures == [{"kind": "tool", "name": "calculator"}]


def test_own_spend_and_remaining_budget(env):
    client, services, secrets = env
    admin = auth(secrets["admin"])
    assert client.put("/v1/spend/caps", headers=admin,
                      json={"scope": "agent", "subject": "helper", "period": "day", "max_usd": 1.0}).status_code == 200
    helper = services.keys.authenticate(secrets["helper"])
    guard = SpendGuard(services.db)
    guard.settle(guard.reserve(helper.key_id, helper.spend_owner_id, helper.agent_id, 0.5, 100), 0.25, 80)
    spend = client.get("/v1/spend", headers=auth(secrets["helper"])).json()
    assert spend["today_usd"] == pytest.approx(0.25) and spend["today_tokens"] == 80
    assert spend["remaining_usd"] == pytest.approx(0.75)
    assert spend["caps"][0]["scope"] == "agent"
    caps = client.get("/v1/spend/caps", headers=admin).json()["data"]
    assert caps[0]["max_usd"] == 1.0


def test_audit_verify_over_http_reports_tampering(env):
    client, services, secrets = env
    admin = auth(secrets["admin"])
    ok = client.get("/v1/audit/verify", headers=admin).json()
    assert ok["ok"] and ok["entries"] > 5
    services.db.execute("DROP TRIGGER audit_log_no_update")
    services.db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    bad = client.get("/v1/audit/verify", headers=admin).json()
    assert not bad["ok"] and bad["first_bad_seq"] == 3
    entries = client.get("/v1/audit?limit=2", headers=admin).json()["data"]
    assert [e["seq"] for e in entries] == [1, 2]
