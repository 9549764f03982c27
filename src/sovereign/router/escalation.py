"""Local-first escalation: the answer of the small local tier is checked, and when a check fails
the request is asked again of the next bigger allowed model (a bigger local one first: the plan
orders local before remote at equal tier, cheapest first).

The checks, cheapest first (``answer_problem``; no model call):

- empty, or cut off by ``max_tokens`` before anything was said;
- malformed output: not JSON when ``response_format`` asked for JSON, not matching the JSON
  schema when one was given, a tool call whose arguments are not a JSON object;
- low confidence in words: the answer hedges or declines ("I'm not sure", "I don't know");
- low confidence in numbers, with ``[router] min_confidence`` set: the answer's mean token
  probability (the geometric mean, from the log probabilities the router asks the backend for)
  is below it.

Then, only with ``[router] verifier`` set, a verifier model is asked whether the answer is right
(one short yes/no call through the governed path; its cost is counted as the check's).

What happened is returned to the caller in the decision (``Escalation``), audited
(``router.escalated``) and summed by ``sovereign costs`` / ``/v1/costs`` (count, rate, spend).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

import jsonschema

from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, Thinking

__all__ = ["Escalation", "answer_problem", "mean_token_probability", "verifier_request", "verifier_says_wrong"]

_HEDGES = re.compile(
    r"\b(?:i(?:'m| am) not (?:sure|certain)|i do(?:n't| not) know|i(?: cannot|can't|can not) (?:determine|tell|answer"
    r"|be sure)|not enough information|i(?:'m| am) unable to (?:answer|determine)|it is unclear|unclear from)\b")
_VERDICT = re.compile(r"\b(yes|no|correct|incorrect|wrong|right)\b")


@dataclass(slots=True)
class Escalation:
    """A failed check and what it led to: ``to`` is None when no bigger model was allowed or
    available (the first answer then stands, and the decision says so)."""

    problem: str
    source: str
    to: str | None = None
    first_cost_usd: float = 0.0
    check_cost_usd: float = 0.0
    extra_cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "from": self.source, "to": self.to, "first_cost_usd": self.first_cost_usd,
                "check_cost_usd": self.check_cost_usd, "extra_cost_usd": self.extra_cost_usd}


def mean_token_probability(response: ChatResponse) -> float | None:
    """The geometric mean of the answer's token probabilities; None without log probabilities."""
    if not response.logprobs:
        return None
    return math.exp(sum(entry.logprob for entry in response.logprobs) / len(response.logprobs))


def answer_problem(request: ChatRequest, response: ChatResponse, min_confidence: float = 0.0) -> str | None:
    """Why an answer fails the cheap checks (see the module docstring), or None."""
    message = response.message
    if message.tool_calls:
        for call in message.tool_calls:
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                return f"malformed arguments in the call to {call.name}"
            if not isinstance(arguments, dict):
                return f"arguments of the call to {call.name} are not a JSON object"
        return None
    text = (message.content or "").strip()
    if not text:
        return "cut off before answering" if response.finish_reason == "length" else "empty answer"
    if request.response_format.type != "text":
        return _json_problem(text, request.response_format.schema if request.response_format.type == "json_schema"
                             else None)
    hedge = _HEDGES.search(text.lower())
    if hedge is not None:
        return f"low confidence: the answer says '{hedge.group(0)}'"
    confidence = mean_token_probability(response) if min_confidence > 0 else None
    if confidence is not None and confidence < min_confidence:
        return f"low confidence: mean token probability {confidence:.2f} is below {min_confidence:g}"
    return None


def _json_problem(text: str, schema: dict[str, Any] | None) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return "malformed JSON"
    if schema:
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            return f"JSON does not match the schema: {exc.message[:120]}"
        except jsonschema.SchemaError:
            return None  # the caller's schema is broken: not the answer's fault
    return None


def verifier_request(request: ChatRequest, response: ChatResponse, verifier: str) -> ChatRequest:
    """A short yes/no question to ``verifier``: is this answer to the last user message right?"""
    question = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
    prompt = (f"Question:\n{question[:4000]}\n\nProposed answer:\n{(response.message.content or '')[:2000]}\n\n"
              "Is the proposed answer correct? Reply with one word: yes or no.")
    return replace(request, model=verifier, messages=[Message(role="user", content=prompt)], max_tokens=4,
                   temperature=0.0, tools=[], response_format=type(request.response_format)(),
                   thinking=Thinking(False), stop=[])


def verifier_says_wrong(reply: ChatResponse) -> bool:
    """True when the verifier's reply is a no (an unreadable verdict is not a no)."""
    found = _VERDICT.search((reply.message.content or "").lower())
    return found is not None and found.group(1) in ("no", "incorrect", "wrong")
