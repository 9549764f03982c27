"""One governed path for every model call: the same caps, ledger and audit from HTTP chat, HTTP
runs, CLI chat, CLI run and the MCP server. A deterministic priced echo model (sovereign.testing)
stands in for the kernel; one integration test uses the real embedded model."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sovereign.config import load_settings
from sovereign.errors import SpendCapExceededError
from sovereign.governance.governed_model import GovernedModel
from sovereign.governance.governor import CallScope
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.server.app import create_app
from sovereign.server.bootstrap import bootstrap_admin_key
from sovereign.services import Services
from sovereign.testing import TestModel
from sovereign.tools.mcp_server import available_tools  # here, not under capsys: the MCP SDK binds sys.stderr at import

PRICED = ModelSpec(name="priced-echo", backend="in_process", prices=PriceSheet(cached_input=1.0, input=10.0, output=20.0))
TINY_CAP = 0.0000001


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = Services.open(load_settings(home))
    admin_key = bootstrap_admin_key(services)
    services.register(PRICED, TestModel(name="priced-echo"))
    app = create_app(services, preload=False)
    with TestClient(app) as client:
        yield services, client, {"Authorization": f"Bearer {admin_key}"}
    services.close()


def _admin_id(services: Services) -> str:
    return services.keys.local_principal().identity_id


def _chat(client, headers, text="hello there", **extra):
    return client.post("/v1/chat/completions", headers=headers,
                       json={"model": "priced-echo", "messages": [{"role": "user", "content": text}], **extra})


def _run(client, headers, task="say hello", **extra):
    body = {"task": task, "model": "priced-echo", "wait": True, "definition": {"name": "echo"},
            "budget": {"max_steps": 3}, **extra}
    return client.post("/v1/runs", headers=headers, json=body)


def _ledger_rows(services: Services, request_id: str) -> int:
    return services.db.query_one("SELECT COUNT(*) FROM usage_ledger WHERE request_id = ?", (request_id,))[0]


def _reopen(services: Services) -> Services:
    """The CLI closes the services it opened; read what it wrote through a fresh handle."""
    return Services.open(load_settings(services.settings.home))


def _cli_run(services: Services, monkeypatch, task: str) -> object:
    import sovereign.cli.run as cli_run

    monkeypatch.setattr(cli_run, "_open_services", lambda: services)
    return CliRunner().invoke(cli_run._standalone(), ["run", "--model", "priced-echo", "--json", task])


def _cli_chat(services: Services, monkeypatch, capsys, lines: list[str]) -> str:
    import sovereign.cli.chat as cli_chat

    feed = iter(lines)

    async def read_line(_prompt: str) -> str | None:
        return next(feed, None)

    monkeypatch.setattr(cli_chat, "_read_line", read_line)
    asyncio.run(cli_chat.chat_loop(services, model="priced-echo", think=False, max_tokens=16))
    return capsys.readouterr().out


def _mcp_chat(services: Services):
    return next(t for t in available_tools(services) if t.__name__ == "chat")


# --- caps hold on every interface -----------------------------------------------------------------


def test_a_tiny_owner_cap_refuses_chat_runs_cli_and_mcp(env, monkeypatch, capsys):
    services, client, headers = env
    services.spend.set_cap("owner", _admin_id(services), "day", max_usd=TINY_CAP)

    chat = _chat(client, headers)
    assert chat.status_code == 429 and "cap" in chat.json()["error"]["message"]

    run = _run(client, headers)
    assert run.status_code == 201, run.text
    record = run.json()
    assert record["status"] == "stopped" and record["answer"] != "say hello"
    assert "spend cap exceeded" in record["stop_reason"] and f"owner '{_admin_id(services)}'" in record["stop_reason"]

    with pytest.raises(SpendCapExceededError, match="owner"):
        asyncio.run(_mcp_chat(services)("hello", model="priced-echo"))

    out = _cli_chat(services, monkeypatch, capsys, ["hello", "/exit"])
    assert "spend cap exceeded" in out and "owner" in out

    cli = _cli_run(services, monkeypatch, "say hello")
    assert cli.exit_code == 2, cli.output
    result = json.loads(cli.stdout.strip().splitlines()[-1])
    assert result["status"] == "stopped" and "spend cap exceeded" in result["stop_reason"]

    after = _reopen(services)
    try:
        assert after.ledger.totals().calls == 0  # nothing was spent, by any interface
        refusals = [e for e in after.audit.entries(kind="spend.refused")]
        assert len(refusals) == 5
        assert services.models["priced-echo"].requests == []
    finally:
        after.close()


def test_each_call_is_in_the_ledger_and_the_audit_log_exactly_once(env, monkeypatch, capsys):
    services, client, headers = env
    admin = _admin_id(services)

    reply = _chat(client, headers)
    assert reply.status_code == 200
    assert _ledger_rows(services, reply.json()["id"]) == 1
    with client.stream("POST", "/v1/chat/completions", headers=headers,
                       json={"model": "priced-echo", "stream": True,
                             "messages": [{"role": "user", "content": "stream me"}]}) as stream:
        chunks = [json.loads(line[6:]) for line in stream.iter_lines()
                  if line.startswith("data: {")]
    assert _ledger_rows(services, chunks[0]["id"]) == 1

    run = _run(client, headers).json()
    assert run["status"] == "completed"
    calls = run["usage"]["model_calls"]
    assert calls >= 1 and _ledger_rows(services, run["id"]) == calls
    run_audit = [e for e in services.audit.entries(kind="model.call") if e.data.get("run_id") == run["id"]]
    assert len(run_audit) == calls and all(e.data["owner"] == admin for e in run_audit)

    before = services.ledger.totals().calls
    assert asyncio.run(_mcp_chat(services)("from mcp", model="priced-echo")) == "from mcp"
    assert services.ledger.totals().calls == before + 1

    _cli_chat(services, monkeypatch, capsys, ["one", "two", "/exit"])
    assert services.ledger.totals().calls == before + 3

    cli = _cli_run(services, monkeypatch, "from the cli")
    assert cli.exit_code == 0, cli.output
    cli_run_id = json.loads(cli.stdout.strip().splitlines()[-1])["run_id"]
    after = _reopen(services)
    try:
        assert _ledger_rows(after, cli_run_id) == 1
        rows = after.db.query("SELECT principal, cost_usd FROM usage_ledger")
        assert {r["principal"] for r in rows} == {admin}  # one owner, the admin's identity id
        assert all(r["cost_usd"] > 0 for r in rows)
        total = after.ledger.totals()
        spend = after.spend.status(owner_id=admin)
        assert spend.total_usd == pytest.approx(total.cost_usd)  # settled spend = the ledger
        assert len(after.audit.entries(kind="model.call")) == total.calls
        assert after.audit.verify().ok
    finally:
        after.close()


def test_concurrent_runs_never_exceed_the_owner_cap(env):
    services, client, headers = env
    services.models["priced-echo"].latency = 0.02  # calls overlap
    cap = 0.02
    services.spend.set_cap("owner", _admin_id(services), "day", max_usd=cap)
    task = "word " * 40  # ~$0.0032 reserved per call at these prices, ~$0.0023 settled: ~8 fit
    echo = {"name": "echo", "max_tokens": 16}
    with ThreadPoolExecutor(max_workers=12) as pool:
        records = list(pool.map(lambda _: _run(client, headers, task, definition=echo).json(), range(30)))
    statuses = [r["status"] for r in records]
    assert set(statuses) <= {"completed", "stopped"} and "completed" in statuses and "stopped" in statuses
    assert all("spend cap" in r["stop_reason"] for r in records if r["status"] == "stopped")
    assert services.ledger.totals().cost_usd <= cap + 1e-12
    assert services.spend.status(owner_id=_admin_id(services)).today_usd <= cap + 1e-12


def _runs_in_a_process(home: str, n: int, out) -> None:
    from sovereign.agent import Agent, Budget, Runner

    services = Services.open(load_settings(home))
    services.register(PRICED, TestModel(name="priced-echo"))
    runner = Runner(services)
    agent = Agent(name="echo", model="priced-echo", max_tokens=16, budget=Budget(max_steps=2))
    statuses = [asyncio.run(runner.run(agent, "word " * 40)).status for _ in range(n)]
    services.close()
    out.put(statuses)


def test_runs_in_several_processes_never_exceed_the_owner_cap(env):
    import multiprocessing

    services, _, _ = env
    cap = 0.012  # room for about four of the twenty runs
    services.spend.set_cap("owner", _admin_id(services), "day", max_usd=cap)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_runs_in_a_process, args=(str(services.settings.home), 5, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    statuses = [status for _ in procs for status in out.get(timeout=120)]
    for proc in procs:
        proc.join(60)
    assert statuses.count("completed") >= 1 and statuses.count("stopped") >= 1
    assert services.ledger.totals().cost_usd <= cap + 1e-12


def test_model_scope_and_key_caps_apply_to_runs(env):
    from sovereign.governance.keys import Scopes

    services, client, headers = env
    services.keys.create_identity("dana", role="operator")
    _, narrow = services.keys.create_key("dana", scopes=Scopes(models=["other-model"]))
    refused = _run(client, {"Authorization": f"Bearer {narrow}"})
    assert refused.status_code == 403 and "priced-echo" in refused.json()["error"]["message"]
    _, capped = services.keys.create_key("dana", scopes=Scopes(max_spend_usd=TINY_CAP))
    stopped = _run(client, {"Authorization": f"Bearer {capped}"}).json()
    assert stopped["status"] == "stopped" and "cap on key" in stopped["stop_reason"]


def test_an_abandoned_stream_releases_its_reservation(env):
    services, _, _ = env
    principal = services.keys.local_principal()
    model = GovernedModel(services.models["priced-echo"], services.governor, CallScope(principal, request_id="r1"))
    request = ChatRequest(model="priced-echo", messages=[Message(role="user", content="a b c")], max_tokens=8)

    async def first_only() -> None:
        events = model.stream(request)
        await anext(events)
        await events.aclose()

    asyncio.run(first_only())
    status = services.spend.status(owner_id=principal.identity_id)
    assert status.total_usd == 0 and services.ledger.totals().calls == 0
    assert services.db.query_one("SELECT status FROM spend_reservations")[0] == "released"


@pytest.mark.integration
def test_real_model_chat_and_run_take_the_governed_path(tmp_path, monkeypatch, models_dir):
    from tests.conftest import make_home

    home = make_home(tmp_path / "home", models_dir)
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    services = Services.open(load_settings(home))
    admin_key = bootstrap_admin_key(services)
    headers = {"Authorization": f"Bearer {admin_key}"}
    admin = _admin_id(services)
    try:
        with TestClient(create_app(services, preload=False)) as client:
            body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
            reply = client.post("/v1/chat/completions", headers=headers, json=body)
            assert reply.status_code == 200, reply.text
            assert _ledger_rows(services, reply.json()["id"]) == 1
            run = client.post("/v1/runs", headers=headers, json={
                "task": "Reply with the word yes.", "wait": True,
                "definition": {"name": "short", "max_tokens": 8}, "budget": {"max_steps": 2}}).json()
            assert run["owner"] == admin
            assert _ledger_rows(services, run["id"]) == run["usage"]["model_calls"] >= 1
            services.spend.set_cap("owner", admin, "day", max_tokens=20)  # local models cost $0: cap tokens
            assert client.post("/v1/chat/completions", headers=headers, json=body).status_code == 429
            capped = client.post("/v1/runs", headers=headers, json={
                "task": "Reply with the word yes.", "wait": True, "definition": {"name": "short"}}).json()
            assert capped["status"] == "stopped" and "token cap exceeded" in capped["stop_reason"]
    finally:
        services.close()
