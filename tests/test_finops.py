"""FinOps: the workload and break-even calculators, honest local cost on the governed path, the
ledger migration, and the cost reports through the CLI and the API, checked against ledgers
whose figures are computed by hand."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sovereign.agent import Agent, Runner
from sovereign.cli.main import app as cli_app
from sovereign.config import load_settings
from sovereign.finops.calculator import Hardware, Workload, breakeven, estimate
from sovereign.finops.energy import SECONDS_A_YEAR, EnergyModel, RaplMeter
from sovereign.finops.ledger import MIGRATIONS, UsageLedger
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, Timings, Usage
from sovereign.kernel.registry import ModelRegistry
from sovereign.server.app import create_app
from sovereign.services import Services
from sovereign.store import Database
from sovereign.testing import FunctionModel

WORKLOAD = Workload(1e6, cached=2000, uncached=200, output=300)


def test_workload_estimate_matches_the_published_figures(tmp_path):
    registry = ModelRegistry.load(load_settings(tmp_path / "home"))
    totals = {name: estimate(WORKLOAD, name, registry.get(name).prices).total_usd
              for name in ("deepseek-v4-flash", "deepseek-v4-pro", "kimi-k2.6")}
    assert totals["deepseek-v4-flash"] == pytest.approx(117.60)
    assert totals["deepseek-v4-pro"] == pytest.approx(1421.0)
    assert totals["kimi-k2.6"] == pytest.approx(2520.0)  # no published cached price: all input uncached


def test_cli_estimate_prints_117_60(tmp_path, monkeypatch):
    monkeypatch.setenv("SOVEREIGN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(cli_app, ["costs", "estimate", "--calls", "1e6", "--cached", "2000", "--uncached",
                                          "200", "--output", "300", "--model", "deepseek-v4-flash"])
    assert result.exit_code == 0, result.output
    assert "$117.60" in result.output and "$1,421.00" in result.output and "$2,520.00" in result.output
    as_json = CliRunner().invoke(cli_app, ["costs", "estimate", "--calls", "10", "--output", "1000", "--json"])
    assert json.loads(as_json.output)["estimate"]["total_usd"] == pytest.approx(10 * 1000 * 0.28 / 1e6)


def test_breakeven_by_hand():
    # $3,000 over 3 years, 300 W at $0.20/kWh, 1,000 tokens/s, busy half the day, vs $0.50 per million
    hw = Hardware(price_usd=3000, power_watts=300, electricity_usd_per_kwh=0.2, amortisation_years=3,
                  utilisation=0.5, tokens_per_s=1000)
    result = breakeven(hw, 0.50)
    fixed = 3000 / (3 * SECONDS_A_YEAR / 86400)
    energy = 300 / 1000 * 1e6 / 3.6e6 * 0.2  # $ per million tokens
    assert result.fixed_usd_per_day == pytest.approx(fixed)
    assert result.energy_usd_per_mtok == pytest.approx(energy)
    assert result.breakeven_tokens_per_day == pytest.approx(fixed / (0.5 - energy) * 1e6)
    assert result.capacity_tokens_per_day == pytest.approx(1000 * 86400 * 0.5)
    assert result.reachable  # ~5.7 M tokens/day needed, 43.2 M possible
    slow = breakeven(Hardware(3000, 300, 0.2, 3, 0.5, tokens_per_s=10), 0.50)
    assert not slow.reachable  # 10 tokens/s cannot generate the volume that pays for the machine
    never = breakeven(hw, energy / 2)  # energy alone costs more than the hosted price
    assert never.breakeven_tokens_per_day is None and not never.reachable


def test_energy_model_by_hand_and_from_rapl(tmp_path):
    model = EnergyModel(power_watts=65, electricity_usd_per_kwh=0.17, hardware_usd=1500, amortisation_years=3,
                        utilisation=0.25)
    charge = model.charge(2.0)
    assert charge.source == "power_figure" and charge.energy_j == pytest.approx(130)
    assert charge.usd == pytest.approx(130 / 3.6e6 * 0.17 + 2.0 * 1500 / (3 * SECONDS_A_YEAR * 0.25))
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("1000000000\n")
    (zone / "energy_uj").write_text("999000000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone: already inside the package's figure
    model.meter = RaplMeter(tmp_path)
    start = model.start()
    (zone / "energy_uj").write_text("4000000\n")  # wrapped: 1 J before the wrap + 4 J after
    measured = model.charge(2.0, start)
    assert measured.source == "rapl" and measured.energy_j == pytest.approx(5.0)


def _old_ledger(path):
    """A database at ledger version 2 (before this change) with two rows."""
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    conn.execute("CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, "
                 "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), "
                 "PRIMARY KEY (component, version))")
    conn.executemany("INSERT INTO schema_migrations (component, version) VALUES ('ledger', ?)", [(1,), (2,)])
    for request_id, cost in (("run_abc", 0.25), ("chatcmpl-1", 0.5)):
        conn.execute("INSERT INTO usage_ledger (request_id, model, principal, prompt_tokens, cached_tokens, "
                     "uncached_tokens, completion_tokens, reasoning_tokens, latency_ms, ttft_ms, cost_usd) "
                     "VALUES (?, 'm', 'idn_1', 10, 4, 6, 5, 1, 100, 10, ?)", (request_id, cost))
    conn.commit()
    conn.close()


def test_ledger_migration_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    _old_ledger(path)
    try:
        db = Database(path)
    except sqlite3.Error:
        pytest.skip("schema_migrations layout differs")
    ledger = UsageLedger(db)
    rows = sorted(ledger.recent(), key=lambda r: r["id"])
    assert [(r["request_id"], r["cost_usd"], r["prompt_tokens"]) for r in rows] == [
        ("run_abc", 0.25, 10), ("chatcmpl-1", 0.5, 10)]
    assert [r["run_id"] for r in rows] == ["run_abc", None]  # a run id is recognised, a request id is not
    assert {r["cost_kind"] for r in rows} == {"price"} and {r["owner_id"] for r in rows} == {"idn_1"}
    db.close()


def _timed(latency_ms: float):
    def answer(request: ChatRequest) -> ChatResponse:
        return ChatResponse(model="x", message=Message(role="assistant", content="ok"),
                            usage=Usage(prompt_tokens=100, cached_tokens=40, completion_tokens=20, reasoning_tokens=5,
                                        requests=1), timings=Timings(latency_ms=latency_ms))
    return answer


@pytest.fixture
def services(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[finops]\npower_watts = 100\nelectricity_usd_per_kwh = 0.36\n'
                                      'hardware_usd = 0\n')
    services = Services.open(load_settings(home), progress=False)
    yield services
    services.close()


def test_local_calls_cost_energy_remote_calls_their_price(services):
    local_name = services.settings.model_for("instant")
    services.models[local_name] = FunctionModel(_timed(1000.0))  # 1 s of compute at 100 W = 100 J
    remote = services.registry.get("deepseek-v4-flash")
    services.register(remote, FunctionModel(_timed(500.0), name=remote.name))
    principal = services.keys.local_principal()

    async def call(name):
        model = await services.governed_model(principal, name)
        await model.complete(ChatRequest(model=name, messages=[Message(role="user", content="hi")], max_tokens=8))
        return model.last

    local = asyncio.run(call(local_name))
    billed = asyncio.run(call(remote.name))
    assert local.cost_usd == pytest.approx(100 / 3.6e6 * 0.36) and local.local.source == "power_figure"
    assert billed.cost_usd == pytest.approx((40 * 0.0028 + 60 * 0.14 + 20 * 0.28) / 1e6) and billed.local is None
    rows = {r["model"]: r for r in services.ledger.recent()}
    assert rows[local_name]["cost_kind"] == "energy" and rows[local_name]["energy_j"] == pytest.approx(100)
    assert rows[remote.name]["cost_kind"] == "price" and rows[remote.name]["energy_j"] is None
    calls = {e.data["model"]: e.data for e in services.audit.entries(kind="model.call")}
    assert calls[local_name]["cost_kind"] == "energy" and calls[local_name]["energy_j"] == pytest.approx(100)
    assert "cost_kind" not in calls[remote.name]


def _ledger_rows(services):
    """Three calls, by hand: alice on flash (day 1, run_a), alice on the local model (day 2),
    bob on flash (day 2)."""
    keys = services.keys
    alice = keys.create_identity("alice", role="operator")
    bob = keys.create_identity("bob", role="operator")
    from sovereign.agent.store import RunStore

    RunStore(services.db)
    services.db.execute("INSERT INTO runs (id, agent, owner, task, status, agent_json) "
                        "VALUES ('run_a', 'helper', ?, 't', 'completed', '{}')", (alice,))
    rows = [("2026-11-01T10:00:00.000Z", "deepseek-v4-flash", alice, "run_a", 1000, 800, 100, 20, 0.10, "price"),
            ("2026-11-02T10:00:00.000Z", "qwen2.5-coder-0.5b-instruct", alice, None, 500, 0, 50, 0, 0.002, "energy"),
            ("2026-11-02T11:00:00.000Z", "deepseek-v4-flash", bob, None, 2000, 0, 300, 100, 0.30, "price")]
    with services.db.transaction() as conn:
        for ts, model, owner, run, prompt, cached, completion, reasoning, cost, kind in rows:
            conn.execute("INSERT INTO usage_ledger (ts, request_id, model, principal, prompt_tokens, cached_tokens, "
                         "uncached_tokens, completion_tokens, reasoning_tokens, latency_ms, ttft_ms, cost_usd, "
                         "owner_id, run_id, cost_kind, energy_j, compute_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1000, 0, "
                         "?, ?, ?, ?, ?, ?)", (ts, run, model, owner, prompt, cached, prompt - cached, completion,
                                              reasoning, cost, owner, run, kind, 20.0 if kind == "energy" else None,
                                              1.0 if kind == "energy" else None))
    return alice, bob


def test_costs_api_scoped_like_spend(services, monkeypatch):
    from tests.conftest import ADMIN_KEY
    from sovereign.server.bootstrap import bootstrap_admin_key

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    bootstrap_admin_key(services, ADMIN_KEY)
    alice, bob = _ledger_rows(services)
    alice_key = services.keys.create_key("alice")[1]
    with TestClient(create_app(services, preload=False)) as client:
        admin = client.get("/v1/costs?by=owner", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        by_owner = {r["key"]: r for r in admin["rows"]}
        assert by_owner[alice]["cost_usd"] == pytest.approx(0.102) and by_owner[bob]["cost_usd"] == pytest.approx(0.30)
        assert admin["totals"]["cached_tokens"] == 800 and admin["totals"]["uncached_tokens"] == 2700
        assert admin["totals"]["output_tokens"] == 330 and admin["totals"]["reasoning_tokens"] == 120
        own = client.get("/v1/costs?by=day&owner=bob", headers={"Authorization": f"Bearer {alice_key}"}).json()
        assert [(r["key"], r["calls"]) for r in own["rows"]] == [("2026-11-01", 1), ("2026-11-02", 1)]
        assert own["totals"]["cost_usd"] == pytest.approx(0.102)  # alice asked for bob: she gets her own
        assert own["totals"]["energy_cost_usd"] == pytest.approx(0.002)
        repriced = {r["model"]: r["cost_usd"] for r in own["repriced"]}
        # alice's tokens: 800 cached, 700 uncached, 130 output + 20 reasoning = 150 output-priced
        assert repriced["deepseek-v4-pro"] == pytest.approx((800 * 0.0145 + 700 * 1.74 + 150 * 3.48) / 1e6)
        assert own["local_throughput"]["tokens_per_s"] == pytest.approx(50.0)
        bad = client.get("/v1/costs?by=colour", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert bad.status_code == 400 and "by" in json.dumps(bad.json())
        est = client.post("/v1/costs/estimate", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          json={"calls": 1e6, "cached": 2000, "uncached": 200, "output": 300})
        assert est.json()["estimate"]["total_usd"] == pytest.approx(117.60)
        even = client.post("/v1/costs/breakeven", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                           json={"hardware_usd": 2000, "power_watts": 100, "hosted_usd_per_mtok": 1.0})
        assert even.status_code == 200 and even.json()["tokens_per_s"] == pytest.approx(50.0)
        negative = client.post("/v1/costs/breakeven", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                               json={"hardware_usd": -1, "power_watts": 100})
        assert negative.status_code == 400


def test_costs_cli_tables_and_json(services, monkeypatch):
    alice, _ = _ledger_rows(services)
    monkeypatch.setenv("SOVEREIGN_HOME", str(services.settings.home))
    monkeypatch.setenv("COLUMNS", "220")
    runner = CliRunner()
    table = runner.invoke(cli_app, ["costs", "--by", "model"])
    assert table.exit_code == 0, table.output
    assert "deepseek-v4-flash" in table.output and "$0.400000" in table.output
    data = json.loads(runner.invoke(cli_app, ["costs", "--by", "run", "--owner", "alice", "--json"]).output)
    assert {r["key"]: r["calls"] for r in data["rows"]} == {"run_a": 1, "(none)": 1}
    assert data["tasks"] == {"runs": 1, "completed": 1, "cost_usd": pytest.approx(0.10),
                             "per_completed_usd": pytest.approx(0.10)}
    by_agent = json.loads(runner.invoke(cli_app, ["costs", "--by", "agent", "--json"]).output)
    assert {r["key"]: r["calls"] for r in by_agent["rows"]} == {"helper": 1, "(none)": 2}
    bad = runner.invoke(cli_app, ["costs", "--since", "yesterday"])
    assert bad.exit_code == 1 and "since" in bad.output


def test_a_run_on_a_local_model_costs_what_the_ledger_holds(services):
    local_name = services.settings.model_for("tools")
    services.models[local_name] = FunctionModel(_timed(1000.0))  # 1 s at 100 W, as above
    runner = Runner(services=services)
    result = asyncio.run(runner.run(Agent(name="plain", tools=[], model=local_name), "Say ok."))
    assert result.status == "completed"
    ledger = sum(r["cost_usd"] for r in services.ledger.recent() if r["run_id"] == result.run_id)
    assert ledger == pytest.approx(100 / 3.6e6 * 0.36)
    assert result.spent.cost_usd == pytest.approx(ledger)  # not $0: the run shows the energy it cost
