"""The HTTP gateway with a deterministic in-process model: accounting, caps, audit, keys."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from sovereign.config import load_settings
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.server.app import create_app
from sovereign.server.bootstrap import bootstrap_admin_key
from sovereign.services import Services
from sovereign.testing import TestModel

LONG = "word " * 1000  # the echo model answers with as many tokens: ~$0.03 a call at these prices
PRICED = ModelSpec(name="priced-echo", backend="in_process", prices=PriceSheet(cached_input=1.0, input=10.0, output=20.0))


@pytest.fixture
def gateway(tmp_path):
    services = Services.open(load_settings(tmp_path / "home"))
    admin_key = bootstrap_admin_key(services)
    services.register(PRICED, TestModel(name="priced-echo"))
    with TestClient(create_app(services, preload=False)) as client:
        yield services, client, {"Authorization": f"Bearer {admin_key}"}
    services.close()


def chat(client, headers, text="hello world", **extra):
    return client.post("/v1/chat/completions", headers=headers,
                       json={"model": "priced-echo", "messages": [{"role": "user", "content": text}], **extra})


def test_first_start_key_is_shown_once_and_stored_hashed(tmp_path):
    services = Services.open(load_settings(tmp_path / "h"))
    secret = bootstrap_admin_key(services)
    assert secret and secret.startswith("sk-sov-")
    assert bootstrap_admin_key(services) is None  # never shown again
    raw = (tmp_path / "h" / "sovereign.db").read_bytes()
    assert secret.encode() not in raw
    services.close()


def test_every_call_lands_in_ledger_with_price_sheet_cost(gateway):
    services, client, headers = gateway
    reply = chat(client, headers, "one two three", max_tokens=5)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    usage = body["usage"]
    expected = (usage["prompt_tokens"] * 10.0 + usage["completion_tokens"] * 20.0) / 1_000_000
    assert body["cost_usd"] == pytest.approx(expected)
    row = services.ledger.recent(1)[0]
    assert row["model"] == "priced-echo" and row["cost_usd"] == pytest.approx(expected)
    assert row["prompt_tokens"] == usage["prompt_tokens"]
    kinds = [entry.kind for entry in services.audit.entries()]
    assert "model.call" in kinds
    assert services.audit.verify().ok


def test_spend_cap_refuses_with_429_naming_cap_and_spend(gateway):
    services, client, headers = gateway
    admin = services.keys.identity("local-admin")["id"]
    services.spend.set_cap("owner", admin, period="day", max_usd=0.5)
    codes = [chat(client, headers, LONG, max_tokens=1000).status_code for _ in range(40)]
    assert codes[0] == 200 and 429 in codes
    refused = chat(client, headers, LONG, max_tokens=1000)
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert "cap" in message and "$0.5" in message and "current spend" in message
    assert services.ledger.totals().cost_usd <= 0.5


def test_concurrent_requests_never_exceed_the_cap(gateway):
    services, client, headers = gateway
    admin = services.keys.identity("local-admin")["id"]
    services.spend.set_cap("owner", admin, period="day", max_usd=0.3)
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda _: chat(client, headers, LONG, max_tokens=1000).status_code, range(50)))
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes
    assert services.ledger.totals().cost_usd <= 0.3


def test_revoked_and_out_of_scope_keys(gateway):
    from sovereign.governance.keys import Scopes

    services, client, headers = gateway
    user = services.keys.create_identity("dana", role="operator")
    key_id, secret = services.keys.create_key(user, scopes=Scopes(models=["other-model"]))
    scoped = {"Authorization": f"Bearer {secret}"}
    assert chat(client, scoped).status_code == 403
    services.keys.revoke(key_id)
    refused = chat(client, scoped)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
