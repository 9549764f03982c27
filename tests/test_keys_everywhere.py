"""Keys everywhere: ``/metrics`` needs a key unless config opens it; ``/v1/models`` lists only
what the key may use; ``sovereign mcp serve --http`` needs a key (the API's ``KeyStore``) and each
MCP call acts as that key's identity — checked with the real MCP client over HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN_KEY, REPO, free_port, open_api_services
from fastapi.testclient import TestClient

from sovereign.governance.keys import Scopes
from sovereign.server.app import create_app


def _bearer(secret: str | None) -> dict:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def _app(tmp_path, monkeypatch, config: str = ""):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", config)
    return services, TestClient(create_app(services, preload=False))


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_need_a_valid_key(tmp_path, monkeypatch):
    services, client = _app(tmp_path, monkeypatch)
    services.keys.create_identity("victor", role="viewer")
    viewer = services.keys.create_key("victor")[1]
    revoked_id, revoked = services.keys.create_key("victor")
    services.keys.revoke(revoked_id)
    with client:
        for secret, status in ((None, 401), ("sk-sov-not-a-key", 401), (revoked, 401), (viewer, 200), (ADMIN_KEY, 200)):
            reply = client.get("/metrics", headers=_bearer(secret))
            assert reply.status_code == status, (secret, reply.text)
            if status == 401:
                assert reply.json()["error"]["type"] == "authentication_error"
        assert "sovereign_model_ready" in client.get("/metrics", headers=_bearer(viewer)).text
    services.close()


def test_metrics_public_when_config_opens_them(tmp_path, monkeypatch):
    services, client = _app(tmp_path, monkeypatch, "[server]\nmetrics_public = true\n")
    with client:
        reply = client.get("/metrics")
        assert reply.status_code == 200 and "sovereign_model_ready" in reply.text
        assert client.get("/v1/models").status_code == 401  # only /metrics is opened
    services.close()


# --- /v1/models -------------------------------------------------------------------------------


def test_models_list_only_what_the_key_may_use(tmp_path, monkeypatch):
    services, client = _app(tmp_path, monkeypatch)
    every = sorted(spec.name for spec in services.registry)
    services.keys.create_identity("alice", role="operator")
    narrow = services.keys.create_key("alice", scopes=Scopes(models=["qwen*"]))[1]
    single = services.keys.create_key("alice", scopes=Scopes(models=["deepseek-v4-flash"]))[1]
    with client:
        admin = [m["id"] for m in client.get("/v1/models", headers=_bearer(ADMIN_KEY)).json()["data"]]
        assert admin[0] == "auto" and sorted(admin[1:]) == every  # the router first: it routes to the local tiers
        listed = [m["id"] for m in client.get("/v1/models", headers=_bearer(narrow)).json()["data"]]
        assert listed[0] == "auto" and (listed := listed[1:]) and all(name.startswith("qwen") for name in listed)
        assert listed == [name for name in (s.name for s in services.registry) if name.startswith("qwen")]
        # a key for one remote model: offline, the router has nothing it may use, so no "auto"
        assert [m["id"] for m in client.get("/v1/models", headers=_bearer(single)).json()["data"]] == ["deepseek-v4-flash"]
        assert client.get("/v1/models/auto", headers=_bearer(single)).status_code == 404
        auto = client.get("/v1/models/auto", headers=_bearer(narrow)).json()
        assert auto["kind"] == "router" and auto["candidates"] and all(c.startswith("qwen") for c in auto["candidates"])

        assert client.get("/v1/models/deepseek-v4-flash", headers=_bearer(single)).json()["id"] == "deepseek-v4-flash"
        hidden = client.get(f"/v1/models/{listed[0]}", headers=_bearer(single))
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
        assert client.get("/v1/models/no-such-model", headers=_bearer(ADMIN_KEY)).status_code == 404
        assert client.get("/v1/models").status_code == 401
    services.close()


# --- the MCP server over HTTP -----------------------------------------------------------------


@pytest.fixture
def mcp_http(tmp_path, monkeypatch):
    """A real ``sovereign mcp serve --http`` process on loopback, with keys made in its home."""
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    home = tmp_path / "home"
    services = open_api_services(home)
    keys = services.keys
    keys.create_identity("alice", role="operator")
    secrets = {
        "admin": ADMIN_KEY,
        "alice": keys.create_key("alice", scopes=Scopes(models=["qwen*"]))[1],
    }
    revoked_id, secrets["revoked"] = keys.create_key("alice")
    keys.revoke(revoked_id)
    services.close()
    port = free_port()
    env = {**os.environ, "SOVEREIGN_HOME": str(home), "PYTHONPATH": str(REPO / "src")}
    log = open(tmp_path / "mcp.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "sovereign.cli.main", "mcp", "serve", "--http", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    _wait_for_port(port, process, tmp_path / "mcp.log")
    yield f"http://127.0.0.1:{port}/mcp", secrets
    process.terminate()
    process.wait(20)
    log.close()


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mcp serve exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("mcp serve --http did not start")


async def _session(url: str, secret: str | None, statuses: list[int] | None = None):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def record(response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async with httpx2.AsyncClient(headers=_bearer(secret), timeout=60, event_hooks={"response": [record]}) as http:
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            models = await client.call_tool("list_models", {})
            refused = await client.call_tool("chat", {"prompt": "hi", "model": "deepseek-v4-flash"})
            return tools, models, refused


def test_mcp_over_http_needs_a_key(mcp_http):
    url, secrets = mcp_http
    for secret in (None, "sk-sov-not-a-key", secrets["revoked"]):
        raw = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={
            **_bearer(secret), "Accept": "application/json, text/event-stream"})
        assert raw.status_code == 401, raw.text
        assert raw.headers["www-authenticate"].lower().startswith("bearer")
        statuses: list[int] = []
        with pytest.raises(Exception, match="unhandled errors"):  # the SDK client cannot start a session
            asyncio.run(_session(url, secret, statuses))
        assert statuses and set(statuses) == {401}


def test_mcp_over_http_acts_as_the_keys_identity(mcp_http):
    url, secrets = mcp_http
    tools, models, refused = asyncio.run(_session(url, secrets["alice"]))
    assert {"chat", "list_models", "run_agent", "search_memory"} <= tools
    listed = models.content[0].text
    assert "qwen" in listed and "deepseek" not in listed  # the key's model scope
    assert refused.is_error and "not scoped for model 'deepseek-v4-flash'" in refused.content[0].text

    _, admin_models, _ = asyncio.run(_session(url, secrets["admin"]))
    assert "deepseek-v4-flash" in admin_models.content[0].text
