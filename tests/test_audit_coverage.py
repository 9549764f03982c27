"""Model calls made by agent runs and approval requests/decisions land in the audit trail."""

from __future__ import annotations

import asyncio

from sovereign.agent import Agent, Runner
from sovereign.config import load_settings
from sovereign.services import Services
from sovereign.testing import ScriptedModel, text_response
from sovereign.tools.approvals import ApprovalQueue


def test_agent_model_calls_and_approvals_are_audited(tmp_path):
    services = Services.open(load_settings(tmp_path / "home"))
    model = ScriptedModel([text_response("42")])
    runner = Runner(services, model=model)
    result = asyncio.run(runner.run(Agent(name="helper", instructions="Answer.", owner="local-admin"), "What is 6*7?"))
    assert "42" in (result.answer or "")
    queue = ApprovalQueue(services.db)
    pending = queue.request("run_x", "run_shell", {"command": "ls"})
    queue.deny(pending.id, decided_by="dana", reason="not now")
    kinds = [entry.kind for entry in services.audit.entries()]
    assert "model.call" in kinds
    assert "approval.requested" in kinds and "approval.decided" in kinds
    assert services.audit.verify().ok
    services.close()
