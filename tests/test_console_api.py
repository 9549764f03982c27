"""The web console without a browser: its pages, fragments and assets, and the API routes it
added (knowledge base, spend report, memory edit/history, model provenance)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import pytest

from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.server.console import HERE, STATIC, VENDORED
from sovereign.server.console.chart import bar_chart, daily_points

REPO = Path(__file__).resolve().parent.parent
OURS = {"console.js", "console.css", "htmx-LICENSE.txt"}


def _key(client, name: str, role: str, **identity) -> str:
    client.post("/v1/identities", json={"name": name, "role": role, **identity}).raise_for_status()
    return client.post("/v1/keys", json={"identity": name}).json()["key"]


def _as(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# --- assets ------------------------------------------------------------------------------------


def test_vendored_assets_match_their_pinned_checksums():
    for name, (source, digest) in VENDORED.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, f"{name} ({source}) changed"
    assert {p.name for p in STATIC.iterdir()} == OURS | set(VENDORED), "every static file is ours or pinned"


def test_no_asset_or_template_points_at_another_host():
    remote = re.compile(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|fetch\(\s*["']https?:""")
    for path in [*HERE.rglob("*.html"), STATIC / "console.js", STATIC / "console.css"]:
        assert not remote.search(path.read_text()), f"{path.name} refers to another host"


def test_every_console_file_is_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sovereign"]
    root = REPO / "src" / "sovereign"
    for path in HERE.rglob("*"):
        if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts:
            relative = path.relative_to(root).as_posix()
            assert any(fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns), relative


# --- pages and fragments --------------------------------------------------------------------------


def test_pages_need_no_key_and_hold_no_data(api):
    client, _ = api
    page = client.get("/", headers={"Authorization": ""})
    assert page.status_code == 200 and 'id="sign-in"' in page.text and "htmx-2.0.11.min.js" in page.text
    for name in ("runs", "approvals", "spend", "memory", "knowledge", "audit", "models"):
        assert client.get(f"/console/{name}", headers={"Authorization": ""}).status_code == 200
    missing = client.get("/console/nothing-here", headers={"Authorization": ""})
    assert missing.status_code == 404 and "no console page 'nothing-here'" in missing.json()["error"]["message"]
    assert client.get("/console/ui/spend", headers={"Authorization": ""}).status_code == 401


def test_fragments_honour_the_keys_role(api):
    client, services = api
    viewer = _key(client, "vic", "viewer")
    nav = client.get("/console/ui/nav", headers=_as(viewer)).text
    assert 'data-role="viewer"' in nav and 'data-can-use="no"' in nav
    assert "/console/audit" not in nav and "/console/chat" not in nav and "/console/spend" in nav
    refused = client.get("/console/ui/audit", headers=_as(viewer))
    assert refused.status_code == 403 and "role" in refused.json()["error"]["message"]
    from sovereign.tools.approvals import ApprovalQueue

    owner = services.keys.identity("vic")["id"]
    ApprovalQueue(services.db).request("run_v", "write_file", {"path": "a.txt"}, owner=owner)
    mine = client.get("/console/ui/approvals", headers=_as(viewer)).text
    assert "write_file" in mine and "a.txt" in mine and 'class="approve"' not in mine
    admin = client.get("/console/ui/approvals").text
    assert 'class="approve"' in admin
    assert "/console/audit" in client.get("/console/ui/nav").text


# --- knowledge base API -----------------------------------------------------------------------------


def test_kb_ingest_search_and_list(api):
    client, services = api
    doc = {"name": "ports.md", "content": "# Ports\nThe API listens on port 8321.\n\n# Backups\nNightly at 02:00.\n"}
    first = client.post("/v1/kb/documents", json=doc)
    assert first.status_code == 201 and first.json()["outcome"] == "added" and first.json()["chunks"] >= 1
    assert client.post("/v1/kb/documents", json=doc).json()["outcome"] == "unchanged"
    hits = client.get("/v1/kb/search", params={"q": "which port does the API listen on"}).json()["data"]
    assert hits[0]["citation"]["file"] == "ports.md" and hits[0]["citation"]["section"] == "Ports"
    assert "8321" in hits[0]["text"]
    listed = client.get("/v1/kb/documents").json()["data"]
    assert [d["file"] for d in listed] == ["ports.md"]
    stored = services.settings.home / "knowledge" / "uploads" / "ports.md"
    assert stored.read_text() == doc["content"]


@pytest.mark.parametrize("name, why", [("../escape.md", "plain file name"), ("notes.exe", "must end in"),
                                       ("sub/dir.md", "plain file name")])
def test_kb_ingest_refuses_bad_names(api, name, why):
    client, services = api
    answer = client.post("/v1/kb/documents", json={"name": name, "content": "text"})
    assert answer.status_code == 400 and why in answer.json()["error"]["message"]
    assert answer.json()["error"]["param"] == "name"
    assert not (services.settings.home / "escape.md").exists()


def test_kb_roles_and_public_agents(api):
    client, _ = api
    client.post("/v1/kb/documents", json={"name": "a.txt", "content": "alpha beta gamma"}).raise_for_status()
    viewer = _key(client, "vera", "viewer")
    assert client.get("/v1/kb/search", params={"q": "alpha"}, headers=_as(viewer)).status_code == 200
    refused = client.post("/v1/kb/documents", json={"name": "b.txt", "content": "x"}, headers=_as(viewer))
    assert refused.status_code == 403
    public = _key(client, "greeter", "operator", kind="agent", owner="local-admin", public=True)
    hidden = client.get("/v1/kb/search", params={"q": "alpha"}, headers=_as(public))
    assert hidden.status_code == 403 and hidden.json()["error"]["code"] == "not_exposed"
    client.post("/v1/identities/greeter/exposures", json={"kind": "kb", "name": "default"}).raise_for_status()
    assert client.get("/v1/kb/search", params={"q": "alpha"}, headers=_as(public)).status_code == 200


# --- memory edit and history ----------------------------------------------------------------------------


def test_memory_edit_keeps_the_old_version_as_history(api):
    client, _ = api
    item = client.post("/v1/memory", json={"content": "The deploy window is Tuesday"}).json()["item"]
    edited = client.put(f"/v1/memory/{item['id']}", json={"content": "The deploy window is Thursday"})
    assert edited.status_code == 200 and edited.json()["action"] == "superseded"
    new = edited.json()["item"]
    assert edited.json()["replaced"]["id"] == item["id"]
    history = client.get(f"/v1/memory/{new['id']}/history").json()["data"]
    assert [h["content"] for h in history] == ["The deploy window is Thursday", "The deploy window is Tuesday"]
    assert history[1]["status"] == "superseded" and history[1]["superseded_by"] == new["id"]
    active = client.get("/v1/memory").json()["data"]
    assert [m["content"] for m in active] == ["The deploy window is Thursday"]
    stale = client.put(f"/v1/memory/{item['id']}", json={"content": "again"})
    assert stale.status_code == 400 and "superseded" in stale.json()["error"]["message"]
    other = _key(client, "otto", "operator")
    assert client.put(f"/v1/memory/{new['id']}", json={"content": "mine now"}, headers=_as(other)).status_code == 404
    assert client.put(f"/v1/memory/{new['id']}", json={"content": ""}).status_code == 400


# --- spend report --------------------------------------------------------------------------------------


def test_spend_fragment_shows_costs_by_owner_agent_model_and_day(api):
    client, services = api
    from sovereign.testing import TestModel

    services.registry.add(ModelSpec(name="priced", backend="in_process", prices=PriceSheet(input=1000.0, output=1000.0)))
    services.models["priced"] = TestModel()
    operator = _key(client, "olga", "operator")
    bot = _key(client, "olga-bot", "operator", kind="agent", owner="olga")
    empty = client.get("/console/ui/spend").text
    assert "No spend in these days." in empty and "<rect" not in empty
    for key in (None, operator, bot):
        headers = _as(key) if key else {}
        client.post("/v1/chat/completions", json={"model": "priced", "messages": [{"role": "user", "content": "a b c"}]},
                    headers=headers).raise_for_status()
    admin = client.get("/console/ui/spend").text
    for shown in ("olga-bot", "olga", "local-admin", "priced", datetime.now(UTC).strftime("%Y-%m-%d"), "<rect"):
        assert shown in admin
    assert "All caps" in admin
    own = client.get("/console/ui/spend", headers=_as(operator)).text
    assert "olga" in own and "local-admin" not in own and "All caps" not in own
    assert client.get("/console/ui/spend", params={"days": 0}).status_code == 400


def test_spend_fragment_shows_what_remains_of_a_cap(api):
    client, services = api
    from sovereign.testing import TestModel

    services.registry.add(ModelSpec(name="priced", backend="in_process", prices=PriceSheet(input=1000.0, output=1000.0)))
    services.models["priced"] = TestModel()
    client.put("/v1/spend/caps", json={"scope": "global", "period": "day", "max_usd": 1.0}).raise_for_status()
    remaining = re.compile(r'class="remaining">\s*\$([0-9.]+)')
    assert remaining.search(client.get("/console/ui/spend").text).group(1) == "1"
    client.post("/v1/chat/completions", json={"model": "priced", "messages": [{"role": "user", "content": "a b c"}]}
                ).raise_for_status()
    spent = services.spend.status().to_dict()["today_usd"]
    left = float(remaining.search(client.get("/console/ui/spend").text).group(1))
    assert spent > 0 and left == pytest.approx(1.0 - spent, abs=1e-6)


def test_stored_text_is_escaped_in_fragments(api):
    client, _ = api
    client.post("/v1/memory", json={"content": "<img src=x onerror=alert(1)> is not markup"}).raise_for_status()
    page = client.get("/console/ui/memory").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_daily_points_fill_missing_days_and_bars_scale():
    today = datetime(2026, 3, 10, tzinfo=UTC)
    points = daily_points([{"key": "2026-03-09", "cost_usd": 2.0}, {"key": "2026-03-10", "cost_usd": 1.0}], 3,
                          today=today)
    assert points == [("2026-03-08", 0.0), ("2026-03-09", 2.0), ("2026-03-10", 1.0)]
    chart = bar_chart(points, width=300, height=120)
    assert [b.height for b in chart.bars] == [0.0, 100.0, 50.0] and chart.peak == 2.0
    assert bar_chart([("d", 0.0)]).bars[0].height == 0.0


# --- models -----------------------------------------------------------------------------------------------


def test_models_carry_provenance(api):
    client, services = api
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    local = models[services.settings.kernel.default_model]["provenance"]
    assert local["kind"] == "local" and re.fullmatch(r"[0-9a-f]{64}", local["sha256"]) and local["weights_file"]
    remote = next(m for m in models.values() if m["backend"] == "openai")["provenance"]
    assert remote["kind"] == "remote" and remote["base_url"].startswith("https://")
    table = client.get("/console/ui/models").text
    assert local["sha256"][:16] in table and "jurisdiction" in table


def test_model_picker_lists_only_the_models_a_key_may_use(api):
    client, services = api
    instant = services.settings.model_for("instant")
    client.post("/v1/identities", json={"name": "sam", "role": "operator"}).raise_for_status()
    key = client.post("/v1/keys", json={"identity": "sam", "models": [instant]}).json()["key"]
    options = re.findall(r'<option value="([^"]+)"', client.get("/console/ui/models/options", headers=_as(key)).text)
    assert options == ["auto", instant]
    everything = re.findall(r'<option value="([^"]+)"', client.get("/console/ui/models/options").text)
    assert len(everything) > 2 and everything[0] == "auto"
