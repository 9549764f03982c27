"""Approvals: a risky call waits in a persistent SQLite queue until a human approves or denies
it — through the API object, the ``sovereign approvals`` CLI running as a second process, or
``/v1/approvals``; no decision in time means no."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sovereign.config import load_settings
from sovereign.errors import InvalidRequestError, NotFoundError
from sovereign.governance.keys import Principal
from sovereign.store import Database
from sovereign.tools.approvals import ApprovalQueue


@pytest.fixture
def sov_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    return home


@pytest.fixture
def db(sov_home):
    database = Database(load_settings(sov_home).database_path)
    yield database
    database.close()


async def _wait_for_pending(queue: ApprovalQueue, count: int = 1):
    for _ in range(200):
        pending = queue.list()
        if len(pending) >= count:
            return pending
        await asyncio.sleep(0.02)
    raise AssertionError("no pending approval appeared")


@pytest.mark.parametrize("verdict", ["approve", "deny"])
def test_decide_waits_for_the_human(db, verdict):
    queue = ApprovalQueue(db, poll_interval=0.02)

    async def scenario():
        waiting = asyncio.create_task(queue.decide("run-1", "run_shell", {"command": "ls"}))
        (pending,) = await _wait_for_pending(queue)
        assert not waiting.done()
        assert (pending.run_id, pending.tool_name, json.loads(pending.arguments)) == (
            "run-1", "run_shell", {"command": "ls"})
        getattr(queue, verdict)(pending.id, decided_by="tester", reason="because")
        return await asyncio.wait_for(waiting, 5), pending.id

    allowed, approval_id = asyncio.run(scenario())
    assert allowed is (verdict == "approve")
    decided = queue.get(approval_id)
    assert decided.status == {"approve": "approved", "deny": "denied"}[verdict]
    assert decided.decided_by == "tester" and decided.reason == "because" and decided.decided_at
    assert queue.list() == []


def test_no_decision_in_time_is_a_denial(db):
    queue = ApprovalQueue(db, poll_interval=0.02, timeout=0.2)
    assert asyncio.run(queue.decide("run-2", "write_file", '{"path": "x"}')) is False
    (expired,) = queue.list("expired")
    assert expired.decided_by == "system" and "no decision" in expired.reason


def test_a_cancelled_run_withdraws_its_request(db):
    queue = ApprovalQueue(db, poll_interval=0.02)

    async def scenario():
        waiting = asyncio.create_task(queue.decide("run-3", "http_fetch", "{}"))
        await _wait_for_pending(queue)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert [a.status for a in queue.list(None)] == ["cancelled"]


def test_decisions_are_checked(db):
    queue = ApprovalQueue(db)
    with pytest.raises(NotFoundError):
        queue.approve("apr_missing")
    item = queue.request("run-4", "run_shell", "{}")
    queue.deny(item.id)
    with pytest.raises(InvalidRequestError, match="already denied"):
        queue.approve(item.id)


def test_persisted_across_handles(sov_home, db):
    item = ApprovalQueue(db).request("run-5", "write_file", "{}")
    other = Database(load_settings(sov_home).database_path)
    try:
        assert [a.id for a in ApprovalQueue(other).list()] == [item.id]
    finally:
        other.close()


def _cli(*args: str, home) -> subprocess.CompletedProcess:
    code = "from sovereign.cli.tools import approvals_app; approvals_app(prog_name='sovereign approvals')"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          env={"SOVEREIGN_HOME": str(home), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


@pytest.mark.parametrize(("verdict", "expected"), [("approve", True), ("deny", False)])
def test_cli_in_another_process_decides(sov_home, db, verdict, expected):
    queue = ApprovalQueue(db, poll_interval=0.05)

    async def scenario():
        waiting = asyncio.create_task(queue.decide("run-6", "run_shell", {"command": "rm -rf build"}))
        (pending,) = await _wait_for_pending(queue)
        listed = await asyncio.to_thread(_cli, "list", "--json", home=sov_home)
        assert listed.returncode == 0, listed.stderr
        assert pending.id in listed.stdout and "run_shell" in listed.stdout
        decided = await asyncio.to_thread(_cli, verdict, pending.id, home=sov_home)
        assert decided.returncode == 0, decided.stderr
        assert pending.id in decided.stdout
        return await asyncio.wait_for(waiting, 10)

    assert asyncio.run(scenario()) is expected
    again = _cli(verdict, queue.list(None)[0].id, home=sov_home)
    assert again.returncode == 1 and "already" in again.stderr
    unknown = _cli("approve", "apr_nope", home=sov_home)
    assert unknown.returncode == 1 and "no approval request" in unknown.stderr


class _Services:
    def __init__(self, db):
        self.db = db


def _app(db, role="admin"):
    from sovereign.errors import SovereignError
    from sovereign.server.errors import sovereign_error_response
    from sovereign.server.routes_approvals import router

    app = FastAPI()
    app.state.services = _Services(db)

    @app.middleware("http")
    async def principal(request, call_next):
        request.state.principal = Principal(identity_id="i1", identity_name="alice", role=role, key_id="k1")
        return await call_next(request)

    app.add_exception_handler(SovereignError, lambda request, exc: sovereign_error_response(exc))
    app.include_router(router)
    return app


def test_http_routes_list_approve_deny(db):
    queue = ApprovalQueue(db)
    first = queue.request("run-7", "run_shell", '{"command": "make"}')
    second = queue.request("run-7", "http_fetch", '{"url": "http://127.0.0.1/"}')
    client = TestClient(_app(db))
    listed = client.get("/v1/approvals").json()
    assert [a["id"] for a in listed["data"]] == [first.id, second.id]
    approved = client.post(f"/v1/approvals/{first.id}/approve", json={"reason": "ok"})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == "alice"
    denied = client.post(f"/v1/approvals/{second.id}/deny")
    assert denied.json()["status"] == "denied"
    assert client.get("/v1/approvals").json()["data"] == []
    assert len(client.get("/v1/approvals", params={"status": "all"}).json()["data"]) == 2
    again = client.post(f"/v1/approvals/{first.id}/deny")
    assert again.status_code == 400 and "already approved" in again.json()["error"]["message"]
    assert client.post("/v1/approvals/apr_nope/approve").status_code == 404


def test_http_viewers_may_look_but_not_decide(db):
    item = ApprovalQueue(db).request("run-8", "write_file", "{}", owner="i1")  # the viewer's own run
    client = TestClient(_app(db, role="viewer"))
    assert len(client.get("/v1/approvals").json()["data"]) == 1
    refused = client.post(f"/v1/approvals/{item.id}/approve")
    assert refused.status_code == 403
    assert ApprovalQueue(db).get(item.id).status == "pending"
