"""Provider-neutral chat messages, requests, responses and usage — what every backend speaks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]


def new_tool_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass(slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is a JSON object as text."""

    name: str
    arguments: str
    id: str = field(default_factory=new_tool_call_id)


@dataclass(slots=True)
class Message:
    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    images: list[str] = field(default_factory=list)
    """Image data URLs sent as they are, to a backend that reads images natively (``vision``)."""


@dataclass(slots=True)
class ToolSpec:
    """A function the model may call, with a JSON Schema for its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True)
class ToolChoice:
    """``auto``, ``none``, ``required``, or one named function (``mode == "function"``)."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    function: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    """``text``, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(slots=True)
class Thinking:
    """Thinking (reason, then answer) or instant mode; ``budget_tokens`` caps the reasoning."""

    enabled: bool = False
    budget_tokens: int | None = None


@dataclass(slots=True)
class TokenLogprob:
    """One generated token with its log probability under the model (before sampling settings),
    and the most likely alternatives at that position (``top``: token text and log probability)."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float]] = field(default_factory=list)


REASONING_EFFORT_BUDGET = {"minimal": 0, "low": 256, "medium": 1024, "high": 4096}


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    # Most calls in one turn (None: the backend's default, 1 without parallel_tool_calls).
    max_tool_calls: int | None = None
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    thinking: Thinking = field(default_factory=Thinking)
    # Log probabilities of the answer's tokens, with this many alternatives each (0..20).
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True)
class Usage:
    """Token counts of one or more calls; ``cached_tokens`` is the part of the prompt reused.

    ``estimated`` is True when some count was not reported by the server but estimated locally
    (a remote endpoint that sent no usage); a sum is estimated when any part is.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    estimated: bool = False

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            requests=self.requests + other.requests,
            estimated=self.estimated or other.estimated,
        )


@dataclass(slots=True)
class Timings:
    ttft_ms: float = 0.0
    latency_ms: float = 0.0


@dataclass(slots=True)
class ChatResponse:
    model: str
    message: Message
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)
    logprobs: list[TokenLogprob] | None = None
    """The content tokens' log probabilities when the request asked for them (None otherwise)."""


@dataclass(slots=True)
class StreamEvent:
    """One piece of a streamed answer. The last event carries ``finish_reason`` and usage."""

    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
