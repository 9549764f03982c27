"""The one ``Model`` protocol every backend implements, and the helper that folds a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, StreamEvent, Timings, TokenLogprob, Usage


@runtime_checkable
class Model(Protocol):
    """An async chat model: ``stream`` yields events, ``complete`` returns the whole answer."""

    name: str

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...


async def collect_stream(model_name: str, events: AsyncIterator[StreamEvent]) -> ChatResponse:
    """Fold a stream of events into one ``ChatResponse``."""
    content: list[str] = []
    reasoning: list[str] = []
    message = Message(role="assistant")
    finish = "stop"
    usage, timings = Usage(), Timings()
    logprobs: list[TokenLogprob] | None = None
    async for event in events:
        if event.logprobs:
            logprobs = logprobs if logprobs is not None else []
            logprobs.extend(event.logprobs)
        if event.content:
            content.append(event.content)
        if event.reasoning_content:
            reasoning.append(event.reasoning_content)
        message.tool_calls.extend(event.tool_calls)
        if event.finish_reason:
            finish = event.finish_reason
        if event.usage:
            usage = event.usage
        if event.timings:
            timings = event.timings
    message.content = "".join(content) if content or not message.tool_calls else None
    message.reasoning_content = "".join(reasoning) or None
    return ChatResponse(model=model_name, message=message, finish_reason=finish, usage=usage, timings=timings,
                        logprobs=logprobs)
