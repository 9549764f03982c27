"""Deterministic model doubles for tests — they implement the real ``Model`` protocol.

- ``ScriptedModel``: replays a fixed list of responses in order; ``assert_complete()`` checks
  every scripted response was used.
- ``FunctionModel``: answers with a function of the request.
- ``TestModel``: a zero-latency model that echoes the last user message (benchmarks, gateways).
- ``serve_every_tier``: installs a double as the model of every tier, so nothing loads weights.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, StreamEvent, ToolCall, Usage

__all__ = ["ScriptedModel", "FunctionModel", "TestModel", "serve_every_tier", "text_response", "tool_response"]


def _usage(request: ChatRequest, text: str) -> Usage:
    prompt = sum(len((m.content or "").split()) for m in request.messages)
    return Usage(prompt_tokens=max(prompt, 1), completion_tokens=max(len(text.split()), 1), requests=1)


def text_response(text: str, *, reasoning: str | None = None, model: str = "scripted") -> ChatResponse:
    return ChatResponse(model=model, message=Message(role="assistant", content=text, reasoning_content=reasoning))


def tool_response(*calls: tuple[str, str], model: str = "scripted") -> ChatResponse:
    """A response calling tools: each call is ``(name, arguments_json)``."""
    return ChatResponse(
        model=model,
        message=Message(role="assistant", tool_calls=[ToolCall(name=n, arguments=a) for n, a in calls]),
        finish_reason="tool_calls",
    )


async def _as_stream(response: ChatResponse) -> AsyncIterator[StreamEvent]:
    if response.message.reasoning_content:
        yield StreamEvent(reasoning_content=response.message.reasoning_content)
    if response.message.content or response.logprobs:
        yield StreamEvent(content=response.message.content, logprobs=list(response.logprobs or []))
    yield StreamEvent(
        tool_calls=list(response.message.tool_calls),
        finish_reason=response.finish_reason,
        usage=response.usage,
        timings=response.timings,
    )


@dataclass
class FunctionModel:
    """A deterministic model whose answer is ``function(request)``."""

    function: Callable[[ChatRequest], ChatResponse]
    name: str = "function"
    requests: list[ChatRequest] = field(default_factory=list)
    latency: float = 0.0
    """Seconds each call awaits before answering (lets concurrent calls overlap in tests)."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        response = self.function(request)
        if response.usage.requests == 0:
            text = response.message.content or "".join(c.arguments for c in response.message.tool_calls)
            response.usage = _usage(request, text)
        response.model = self.name
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = await self.complete(request)
        async for event in _as_stream(response):
            yield event


class ScriptedModel(FunctionModel):
    """A deterministic model that returns the scripted responses in order."""

    def __init__(self, responses: list[ChatResponse], name: str = "scripted") -> None:
        self._script = list(responses)
        self._used = 0
        super().__init__(function=self._next, name=name)

    def _next(self, request: ChatRequest) -> ChatResponse:
        if self._used >= len(self._script):
            raise AssertionError(f"ScriptedModel '{self.name}' ran out of responses after {self._used}")
        response = self._script[self._used]
        self._used += 1
        return response

    def assert_complete(self) -> None:
        left = len(self._script) - self._used
        assert left == 0, f"ScriptedModel '{self.name}' has {left} unused responses"


class TestModel(FunctionModel):
    """A zero-latency model that echoes the last user message."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "test") -> None:
        super().__init__(function=self._echo, name=name)

    @staticmethod
    def _echo(request: ChatRequest) -> ChatResponse:
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), "") or ""
        return text_response(last)


def serve_every_tier(services: Any, model: Any) -> None:
    """Make ``model`` answer for every tier (chat and agents) of ``services``, so a test that
    names no model never loads real weights."""
    tiers = services.settings.kernel.tiers
    for name in {services.settings.kernel.default_model, *tiers.model_dump().values()}:
        if isinstance(name, str):
            services.models[name] = model
