"""Kernel responses and stream events rendered as OpenAI chat-completion objects and chunks."""

from __future__ import annotations

from typing import Any

from sovereign.kernel.messages import ChatResponse, StreamEvent, Timings, TokenLogprob, ToolCall, Usage


def usage_json(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    if usage.estimated:
        out["estimated"] = True  # counted locally: the upstream server reported no usage
    return out


def timings_json(timings: Timings) -> dict[str, float]:
    return {"ttft_ms": round(timings.ttft_ms, 3), "latency_ms": round(timings.latency_ms, 3)}


def _calls_json(calls: list[ToolCall], *, with_index: bool = False) -> list[dict[str, Any]]:
    out = []
    for index, call in enumerate(calls):
        item: dict[str, Any] = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        if with_index:
            item["index"] = index
        out.append(item)
    return out


def token_logprobs_json(entries: list[TokenLogprob]) -> list[dict[str, Any]]:
    """Tokens with their log probabilities and alternatives, as both OpenAI APIs list them."""
    return [{"token": e.token, "logprob": e.logprob, "bytes": e.bytes,
             "top_logprobs": [{"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}
                              for token, logprob in e.top]} for e in entries]


def logprobs_json(entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """Chat completions' ``choices[].logprobs`` (None when they were not asked for)."""
    if entries is None:
        return None
    return {"content": token_logprobs_json(entries), "refusal": None}


def completion_json(completion_id: str, created: int, response: ChatResponse, cost: float) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.message.content}
    if response.message.reasoning_content:
        message["reasoning_content"] = response.message.reasoning_content
    if response.message.tool_calls:
        message["tool_calls"] = _calls_json(response.message.tool_calls)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "choices": [{"index": 0, "message": message, "finish_reason": response.finish_reason,
                     "logprobs": logprobs_json(response.logprobs)}],
        "usage": usage_json(response.usage),
        "timings": timings_json(response.timings),
        "cost_usd": cost,
    }


class ChunkWriter:
    """Turns stream events into ``chat.completion.chunk`` objects."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._role_sent = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return {**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                           "logprobs": logprobs_json(logprobs or None)}]}

    def event(self, event: StreamEvent) -> list[dict[str, Any]]:
        chunks = []
        delta: dict[str, Any] = {}
        if event.reasoning_content:
            delta["reasoning_content"] = event.reasoning_content
        if event.content:
            delta["content"] = event.content
        if event.tool_calls:
            delta["tool_calls"] = _calls_json(event.tool_calls, with_index=True)
        if delta or event.logprobs:
            chunks.append(self._chunk(delta, logprobs=event.logprobs))
        if event.finish_reason:
            chunks.append(self._chunk({}, event.finish_reason))
        return chunks

    def usage(self, usage: Usage, timings: Timings) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": usage_json(usage), "timings": timings_json(timings)}
