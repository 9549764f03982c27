"""The answer a run is made to give when it repeats itself: asked afresh, from the evidence.

A small model told "you already have that result, answer now" in the middle of its own
transcript often calls the same tool again — the transcript is full of calls, and it imitates
them. So the forced turn is a separate, tool-free request (as smolagents does when a run runs
out of steps): the task and what the tools returned, written as plain text, and a request for
the answer in plain words.
"""

from __future__ import annotations

from sovereign.agent.prompts import prompt
from sovereign.agent.steps import Step
from sovereign.agent.verify import evidence_of
from sovereign.kernel.messages import ChatRequest, Message, Thinking, ToolChoice

__all__ = ["forced_answer_request"]


def forced_answer_request(model: str, task: str, steps: list[Step], *, window: int, max_tokens: int,
                          temperature: float | None, thinking: Thinking) -> ChatRequest:
    limit = max((window - max_tokens - 300) * 3 - len(task), 400)
    user = prompt("forced_answer_user").format(task=task, evidence=evidence_of(steps, limit))
    return ChatRequest(
        model=model,
        messages=[Message(role="system", content=prompt("forced_answer_system")), Message(role="user", content=user)],
        max_tokens=max_tokens, temperature=temperature, tool_choice=ToolChoice(mode="none"), thinking=thinking,
    )
