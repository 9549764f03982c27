"""Authorisation decided once per run execution (or request): a ``GovernedModel`` authorises each
model name once, a run's guard decides each tool name once. Both answers depend only on the
principal and the visibility taken when the run began, so nothing changes but the repeats; a
refusal is never remembered as a permission, and a new run decides again."""

from __future__ import annotations

import asyncio

import pytest

from sovereign.agent import Agent
from sovereign.agent import _guard
from sovereign.agent._guard import RunGuard
from sovereign.config import load_settings
from sovereign.errors import PermissionDeniedError
from sovereign.governance import governor as governor_module
from sovereign.governance.governed_model import GovernedModel
from sovereign.governance.governor import CallScope
from sovereign.governance.keys import Scopes
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.services import Services
from sovereign.testing import TestModel
from sovereign.tools import tool


@pytest.fixture
def services(tmp_path):
    opened = Services.open(load_settings(tmp_path / "home"))
    opened.register(ModelSpec(name="echo", backend="in_process", prices=PriceSheet(input=1.0, output=2.0)),
                    TestModel(name="echo"))
    opened.keys.create_identity("user", role="operator")
    yield opened
    opened.close()


def _principal(services: Services, scopes: Scopes):
    _, secret = services.keys.create_key("user", name=f"k{len(services.keys.list_keys())}", scopes=scopes)
    return services.keys.authenticate(secret)


def _request(text: str = "hi") -> ChatRequest:
    return ChatRequest(model="echo", messages=[Message(role="user", content=text)], max_tokens=8)


def test_a_governed_model_authorises_a_model_once_and_refuses_every_time(services, monkeypatch):
    decisions = []
    real = governor_module.authorize
    monkeypatch.setattr(governor_module, "authorize", lambda *a, **k: decisions.append(k) or real(*a, **k))

    allowed = GovernedModel(TestModel(name="echo"), services.governor, CallScope(_principal(services, Scopes())))
    for text in ("one", "two", "three"):
        assert asyncio.run(allowed.complete(_request(text))).message.content == text
    assert len(decisions) == 1

    refused = GovernedModel(TestModel(name="echo"), services.governor,
                            CallScope(_principal(services, Scopes(models=["other"]))))
    for _ in range(2):
        with pytest.raises(PermissionDeniedError):
            asyncio.run(refused.complete(_request()))
    assert len(decisions) == 3  # a refusal is decided again each time, never remembered as allowed

    again = GovernedModel(TestModel(name="echo"), services.governor, allowed.scope)
    asyncio.run(again.complete(_request()))
    assert len(decisions) == 4  # a new wrapper (run or request) decides afresh


def test_a_run_guard_decides_each_tool_once(services, monkeypatch):
    decisions = []
    real = _guard.authorize
    monkeypatch.setattr(_guard, "authorize", lambda *a, **k: decisions.append(k["tool"]) or real(*a, **k))

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    @tool
    def wipe() -> str:
        """Wipe."""
        return "gone"

    principal = _principal(services, Scopes(tools=["add"]))
    agent = Agent(name="a", tools=[add, wipe])
    guard = RunGuard.build(agent, "run_x", "task", approver=None, services=services, principal=principal)
    assert [t.name for t in guard.offered(agent.tools)] == ["add"]
    for _ in range(3):
        assert guard.forbidden("add") is None
        assert "not scoped for tool 'wipe'" in (guard.forbidden("wipe") or "")
    assert sorted(decisions) == ["add", "wipe"]

    fresh = RunGuard.build(agent, "run_y", "task", approver=None, services=services, principal=principal)
    assert fresh.forbidden("add") is None and len(decisions) == 3
