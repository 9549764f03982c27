"""``/v1/memory`` (owner = the calling identity) and the ``sovereign memory`` / ``kb`` CLI groups."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sovereign.cli.kb import app as kb_app
from sovereign.cli.memory import app as memory_app
from sovereign.errors import SovereignError
from sovereign.server.routes_memory import router
from sovereign.store import Database


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_MEMORY_KEY", raising=False)
    app = FastAPI()
    db = Database(tmp_path / "sovereign.db")
    app.state.services = SimpleNamespace(db=db, settings=SimpleNamespace(home=tmp_path))

    @app.middleware("http")
    async def principal(request: Request, call_next):
        who = request.headers.get("x-who", "ann")
        request.state.principal = SimpleNamespace(identity_id=f"id_{who}", identity_name=who)
        return await call_next(request)

    @app.exception_handler(SovereignError)
    async def sovereign_error(request: Request, exc: SovereignError):  # as the real server maps them
        return JSONResponse({"error": {"message": exc.message, "code": exc.code}}, status_code=exc.status_code)

    app.include_router(router)
    with TestClient(app) as test_client:
        yield test_client
    db.close()


def test_api_add_search_list_forget_scoped(client):
    created = client.post("/v1/memory", json={"content": "The release train leaves on Thursdays."})
    assert created.status_code == 200 and created.json()["action"] == "added"
    memory_id = created.json()["item"]["id"]
    found = client.get("/v1/memory/search", params={"q": "when does the release train leave"}).json()["data"]
    assert found[0]["id"] == memory_id
    assert client.get("/v1/memory/search", params={"q": "release train"}, headers={"x-who": "bob"}).json()["data"] == []
    assert client.get("/v1/memory", headers={"x-who": "bob"}).json()["data"] == []
    assert client.delete(f"/v1/memory/{memory_id}", headers={"x-who": "bob"}).status_code == 404
    assert client.delete(f"/v1/memory/{memory_id}").json()["deleted"] is True
    assert client.get("/v1/memory").json()["data"] == []
    assert client.post("/v1/memory", json={"content": ""}).status_code == 422


def test_cli_memory_and_kb(home, tmp_path):
    runner = CliRunner()
    added = runner.invoke(memory_app, ["add", "The office wifi is called Heron."])
    assert added.exit_code == 0, added.output
    assert "Heron" in runner.invoke(memory_app, ["search", "wifi name"]).output
    assert "Heron" in runner.invoke(memory_app, ["export"]).output
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\n## Wifi\n\nThe guest network password rotates monthly.\n")
    (tmp_path / "bad.pdf").write_bytes(b"not a pdf")
    result = runner.invoke(kb_app, ["ingest", str(doc), str(tmp_path / "bad.pdf")])
    assert result.exit_code == 1 and "added 1" in result.output and "bad.pdf" in result.output
    out = runner.invoke(kb_app, ["search", "guest network password"]).output
    assert "notes.md" in out and "Wifi" in out


def test_cli_memory_edit_and_history(home):
    runner = CliRunner()
    added = runner.invoke(memory_app, ["add", "The standup is at 9:30."])
    memory_id = added.output.split()[1]
    edited = runner.invoke(memory_app, ["edit", memory_id, "The standup is at 10:00."])
    assert edited.exit_code == 0 and edited.output.startswith(f"superseded {memory_id} with mem_"), edited.output
    new_id = edited.output.split()[-1]
    shown = runner.invoke(memory_app, ["history", new_id], terminal_width=200).output
    assert "10:00" in shown and "9:30" in shown and "superseded" in shown
    again = runner.invoke(memory_app, ["edit", memory_id, "The standup is at 11:00."])
    assert again.exit_code == 1 and "superseded" in again.output
