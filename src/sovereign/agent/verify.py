"""Self-verification: before a run returns, a model checks the answer against the task and the
evidence the tools gave. Off, the agent's own model, or a named model; the verdict is JSON
constrained by a schema, so even a 0.5B model answers in a form we can read."""

from __future__ import annotations

import json
import re

from sovereign.agent.prompts import prompt
from sovereign.agent.steps import CodeStep, Step, SummaryStep, ToolResultStep
from sovereign.kernel.messages import ChatRequest, Message, ResponseFormat

__all__ = ["VERDICT_SCHEMA", "parse_verdict", "verification_request", "verifier_model_name"]

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "critique": {"type": "string"}},
    "required": ["ok"],
}


def verifier_model_name(mode: str, agent_model: str) -> str | None:
    """None when verification is off; the agent's model for ``same``; otherwise the named model."""
    if mode in ("off", "", "none", "false"):
        return None
    return agent_model if mode == "same" else mode


def evidence_of(steps: list[Step], limit_chars: int) -> str:
    lines = []
    for step in steps:
        if isinstance(step, ToolResultStep) and step.executed:
            lines.append(f"- {step.name}: {step.content[:800]}")
        elif isinstance(step, CodeStep) and step.output:
            lines.append(f"- code printed: {step.output[:800]}")
        elif isinstance(step, SummaryStep):
            lines.append(f"- (summary) {step.text}")
    text = "\n".join(lines) or "- none"
    return text if len(text) <= limit_chars else "[older evidence cut]\n" + text[-limit_chars:]


def verification_request(model: str, task: str, steps: list[Step], answer: str, *, window: int,
                         max_tokens: int = 160) -> ChatRequest:
    limit = max((window - max_tokens - 300) * 3 - len(task) - len(answer), 400)
    user = prompt("verify_user").format(task=task, evidence=evidence_of(steps, limit), answer=answer)
    return ChatRequest(
        model=model,
        messages=[Message(role="system", content=prompt("verify_system")), Message(role="user", content=user)],
        max_tokens=max_tokens,
        temperature=0.0,
        response_format=ResponseFormat(type="json_schema", schema=VERDICT_SCHEMA, name="verdict"),
    )


_PASS_WORDS = re.compile(r"^\W*(pass|yes|ok|correct|true)\b", re.IGNORECASE)


def parse_verdict(text: str | None) -> tuple[bool, str]:
    """``(passed, critique)`` from the checker's reply (JSON, or a PASS/FAIL line as fallback)."""
    text = (text or "").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        ok = data.get("ok", data.get("pass", data.get("verdict")))
        if isinstance(ok, str):
            ok = ok.strip().lower() in ("pass", "yes", "ok", "true", "correct")
        critique = str(data.get("critique") or data.get("reason") or "")
        return bool(ok), critique
    if _PASS_WORDS.match(text):
        return True, ""
    return False, text[:500] or "the checker gave no verdict"
