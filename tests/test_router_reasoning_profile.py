"""Measured reasoning profiles: the router skips reasoning for a (model, kind) whose profile says
it did not pay, keeps it where it paid or was never measured, and obeys the caller and the
config — through the API, with deterministic doubles."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from sovereign.errors import ConfigError
from sovereign.router.reasoning_profile import load_profiles
from sovereign.server.app import create_app
from tests.conftest import ADMIN_KEY, open_api_services
from tests.test_router import FACT, MEDIUM, ROUTER, SMALL, SUM, _serve, chat

LOGIC = ("All cats are animals. Some animals are black. If Tom is a cat, then must Tom be black? "
         "Answer true or false, and explain whether it follows.")


def _profile(path, model, **kinds):
    path.write_text(json.dumps({model: {"kinds": {
        kind: {"questions": 8, "plain": plain, "thinking": thinking} for kind, (plain, thinking) in kinds.items()}}}))
    return path


def _client(tmp_path, monkeypatch, extra=""):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", ROUTER + extra)
    doubles = _serve(services)
    return services, doubles, TestClient(create_app(services, preload=False),
                                          headers={"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.fixture
def profiled(tmp_path, monkeypatch):
    # SMALL: reasoning lost on arithmetic (6 right plainly, 3 with it); MEDIUM: it paid on logic.
    small = _profile(tmp_path / "small.json", SMALL, arithmetic=(6, 3))
    medium = json.loads(_profile(tmp_path / "medium.json", MEDIUM, logic=(2, 7)).read_text())
    both = json.loads(small.read_text()) | medium
    (tmp_path / "profiles.json").write_text(json.dumps(both))
    services, doubles, client = _client(tmp_path, monkeypatch,
                                        f'reasoning_profile = "{tmp_path / "profiles.json"}"\n')
    with client:
        yield client, doubles
    services.close()


def test_reasoning_is_skipped_where_the_profile_says_it_does_not_pay(profiled):
    client, doubles = profiled
    routing = chat(client, SUM).json()["routing"]
    assert routing["model"] == SMALL and routing["kind"] == "arithmetic"
    assert routing["effort"] == "none" and routing["budget_tokens"] == 0
    assert "reasoning skipped" in routing["reason"] and "3/8 right with it, 6/8 without" in routing["reason"]
    assert doubles[SMALL].requests[-1].thinking.enabled is False


def test_reasoning_is_kept_where_it_paid_or_was_never_measured(profiled):
    client, doubles = profiled
    logic = chat(client, LOGIC).json()["routing"]
    assert logic["model"] == MEDIUM and logic["effort"] != "none" and logic["budget_tokens"] > 0
    assert doubles[MEDIUM].requests[-1].thinking.enabled
    fact = chat(client, FACT).json()["routing"]  # the classifier's own "no reasoning" is untouched
    assert fact["effort"] == "none" and "skipped" not in fact["reason"]


def test_the_callers_own_reasoning_setting_wins_over_the_profile(profiled):
    client, doubles = profiled
    routing = chat(client, SUM, reasoning_effort="high").json()["routing"]
    assert routing["effort"] == "high" and "skipped" not in routing["reason"]
    assert doubles[SMALL].requests[-1].thinking.enabled


def test_profiles_off_in_config_keep_the_classifiers_effort(tmp_path, monkeypatch):
    profile = _profile(tmp_path / "p.json", SMALL, arithmetic=(6, 3))
    services, doubles, client = _client(
        tmp_path, monkeypatch, f'reasoning_profile = "{profile}"\nuse_reasoning_profiles = false\n')
    with client:
        routing = chat(client, SUM).json()["routing"]
    services.close()
    assert routing["effort"] in ("low", "medium") and doubles[SMALL].requests[-1].thinking.enabled


def test_a_bad_profiles_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="missing.json"):
        load_profiles(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m": {"kinds": {"logic": {"plain": 1}}}}))
    with pytest.raises(ConfigError, match="bad.json.*questions, plain, thinking"):
        load_profiles(bad)


def test_the_shipped_profile_is_a_measurement_of_the_embedded_instant_model():
    shipped = load_profiles()["qwen2.5-coder-0.5b-instruct"]
    assert set(shipped) >= {"factoid", "arithmetic", "logic", "code", "retrieval"}
    assert all(0 <= m.plain <= m.questions and 0 <= m.thinking <= m.questions for m in shipped.values())


def test_route_explains_a_decision_without_calling_a_model(profiled):
    client, doubles = profiled
    explained = client.post("/v1/route", json={"messages": [{"role": "user", "content": SUM}]})
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["object"] == "route.decision" and body["model"] == SMALL and body["effort"] == "none"
    assert body["reasoning_profile"] == {"questions": 8, "plain": 6, "thinking": 3}
    assert body["plan"][0] == SMALL and body["cooling_down"] == []
    assert all(not double.requests for double in doubles.values())  # nothing was asked, nothing spent
    refused = client.post("/v1/route", json={"messages": [{"role": "user", "content": FACT}], "data_class": "secret"})
    assert refused.status_code == 400 and "data_class" in refused.text


def test_route_cli_prints_the_decision_and_a_refusal_names_the_constraint(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sovereign.cli.main import app

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    runner = CliRunner()
    shown = runner.invoke(app, ["route", SUM, "--json"])
    assert shown.exit_code == 0, shown.output
    decision = json.loads(shown.output)
    assert decision["kind"] == "arithmetic" and decision["plan"] and "reason" in decision
    fact = runner.invoke(app, ["route", FACT])
    assert fact.exit_code == 0 and "effort none" in fact.output and "plan (tried in this order)" in fact.output
    (home / "config.toml").write_text('[router]\ncandidates = ["deepseek-v4-flash"]\noffline = false\n')
    refused = runner.invoke(app, ["route", FACT])
    assert refused.exit_code != 0 and "private" in refused.output


def _timed(path, model, **kinds):
    """A profiles file: kind=(plain, thinking, plain_s, thinking_s) right of 24, with mean seconds."""
    path.write_text(json.dumps({model: {"kinds": {
        kind: {"questions": 24, "plain": p, "thinking": t, "plain_s": ps, "thinking_s": ts}
        for kind, (p, t, ps, ts) in kinds.items()}}}))
    return json.loads(path.read_text())


def test_measured_choice_takes_the_quickest_cell_not_significantly_below_the_best():
    from sovereign.router.reasoning_profile import KindMeasure, measured_choice

    profiles = {"small": {"arithmetic": KindMeasure(24, 0, 6, 1.0, 5.0)},
                "big": {"arithmetic": KindMeasure(24, 8, 12, 2.0, 12.0)}}
    strict = measured_choice("arithmetic", ["small", "big"], profiles, z=0)
    assert (strict.model, strict.thinking) == ("big", True) and "12/24" in strict.reason
    # 8/24 against 12/24 is within noise on 24 questions, and quickest; 0/24 against 12/24 is not
    noisy = measured_choice("arithmetic", ["small", "big"], profiles)
    assert (noisy.model, noisy.thinking) == ("big", False) and "not significantly below" in noisy.reason
    many = {name: {"arithmetic": KindMeasure(2400, m.plain * 100, m.thinking * 100, m.plain_s, m.thinking_s)}
            for name, m in ((n, p["arithmetic"]) for n, p in profiles.items())}
    assert measured_choice("arithmetic", ["small", "big"], many).thinking is True  # measured well: a real gap
    assert measured_choice("arithmetic", ["small", "big"], profiles, may_reason=False).thinking is False
    assert measured_choice("arithmetic", ["small"], profiles) is None  # one model: reasoning_for's case
    assert measured_choice("logic", ["small", "big"], profiles) is None  # never measured
    untimed = {**profiles, "big": {"arithmetic": KindMeasure(24, 8, 12)}}
    assert measured_choice("arithmetic", ["small", "big"], untimed) is None


def test_auto_picks_the_model_and_effort_the_profiles_measured_quickest(tmp_path, monkeypatch):
    both = (_timed(tmp_path / "s.json", SMALL, arithmetic=(0, 6, 1.0, 5.0))
            | _timed(tmp_path / "m.json", MEDIUM, arithmetic=(8, 12, 2.0, 12.0)))
    (tmp_path / "profiles.json").write_text(json.dumps(both))
    services, doubles, client = _client(tmp_path, monkeypatch, f'reasoning_profile = "{tmp_path / "profiles.json"}"\n')
    with client:
        routing = chat(client, SUM).json()["routing"]
        explained = client.post("/v1/route", json={"messages": [{"role": "user", "content": SUM}]}).json()
    services.close()
    assert routing["model"] == MEDIUM and routing["effort"] == "none" and routing["budget_tokens"] == 0
    assert "measured on arithmetic" in routing["reason"] and routing["plan"][0] == MEDIUM and SMALL in routing["plan"]
    assert doubles[MEDIUM].requests[-1].thinking.enabled is False and not doubles[SMALL].requests
    assert explained["reasoning_profile"]["plain_s"] == 2.0
