"""Any OpenAI-compatible endpoint (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs).

Connections are opened only through the egress gate. Reasoning arrives as
``reasoning_content`` (DeepSeek, vLLM) or ``reasoning`` (others); models without native thinking
get the reason-then-answer scaffold and their ``<think>`` block is split out of ``content``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from collections.abc import Callable

import httpx

from sovereign.errors import BackendError
from sovereign.governance.egress import EgressGate
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, StreamEvent, Timings, TokenLogprob, ToolCall, Usage
from sovereign.kernel.registry import ModelSpec
from sovereign.kernel.thinking import ScaffoldSplitter, with_scaffold_instruction
from sovereign.kernel.token_estimate import estimate_usage, heuristic_count
from sovereign.kernel.tool_calls import validate_tools
from sovereign.kernel.tool_markup import MarkupGuard, dedupe_calls, parse_tool_calls


def _splits_thinking(spec: ModelSpec, request: ChatRequest) -> bool:
    """Whether the reply's text may open with ``<think>…</think>`` to move to ``reasoning_content``:
    a scaffolded request, or a native thinker (DeepSeek-R1, Qwen3 served without a reasoning
    parser, e.g. by Ollama or a plain llama.cpp server). A reply without the block is untouched."""
    return request.thinking.enabled or spec.native_thinking


def _effort(budget: int | None) -> str:
    if not budget or budget <= 256:
        return "low"
    return "medium" if budget <= 1024 else "high"


def _message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:  # a vision model: the images go as content parts beside the text
        out["content"] = [*([{"type": "text", "text": message.content}] if message.content else []),
                          *({"type": "image_url", "image_url": {"url": url}} for url in message.images)]
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def request_body(spec: ModelSpec, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body an OpenAI-compatible server expects for ``request``."""
    scaffold = request.thinking.enabled and not spec.native_thinking
    messages = with_scaffold_instruction(request) if scaffold else request.messages
    body: dict[str, Any] = {
        "model": spec.remote_name or spec.name,
        "messages": [_message_json(m) for m in messages],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = request.stop
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in request.tools
        ]
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.function}} if choice.mode == "function" else choice.mode
        )
        body["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = request.response_format
    if fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt.type == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": fmt.name or "response", "schema": fmt.schema or {}}}
    if spec.native_thinking:
        if request.thinking.enabled:
            body["reasoning_effort"] = _effort(request.thinking.budget_tokens)
        else:
            body["thinking"] = {"type": "disabled"}
    return body


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob]:
    """A choice's (or chunk's) ``logprobs.content`` as kernel entries; [] when the server sent none."""
    content = (choice.get("logprobs") or {}).get("content") or []
    return [TokenLogprob(token=item.get("token", ""), logprob=float(item.get("logprob", 0.0)),
                         bytes=list(item.get("bytes") or []),
                         top=[(alt.get("token", ""), float(alt.get("logprob", 0.0)))
                              for alt in item.get("top_logprobs") or []])
            for item in content if isinstance(item, dict)]


def _usage(data: dict[str, Any] | None) -> Usage | None:
    if not data:
        return None
    prompt_details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") or data.get("prompt_cache_hit_tokens") or 0
    return Usage(
        prompt_tokens=data.get("prompt_tokens", 0),
        cached_tokens=cached,
        completion_tokens=data.get("completion_tokens", 0),
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        requests=1,
    )


class OpenAICompatibleModel:
    """``Model`` for a remote (or loopback) OpenAI-compatible chat completions endpoint."""

    def __init__(self, spec: ModelSpec, egress: EgressGate, *, api_key: str | None = None, timeout: float = 600.0,
                 token_counter: Callable[[str], int] | None = None):
        """``token_counter`` counts tokens locally for replies that come without ``usage``
        (e.g. ``token_estimate.VocabCounter`` on the embedded model); without one, a heuristic."""
        if not spec.base_url:
            raise BackendError(f"model '{spec.name}' has no base_url")
        self.name = spec.name
        self.spec = spec
        self._egress = egress
        self._api_key = api_key or (os.environ.get(spec.api_key_env) if spec.api_key_env else None)
        self._timeout = timeout
        self._count = token_counter or heuristic_count

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        return self._egress.client(purpose=f"model backend '{self.name}'", headers=headers, timeout=self._timeout)

    def _estimate(self, request: ChatRequest, text: list[str], calls: list[ToolCall], reasoning: str | None) -> Usage:
        """Usage counted locally, for a server that reported none (flagged estimated).

        ``text`` is the reply's text as received (with any call markup in it), ``calls`` the calls
        the server sent as structured ``tool_calls``."""
        scaffold = request.thinking.enabled and not self.spec.native_thinking
        messages = with_scaffold_instruction(request) if scaffold else request.messages
        completion = [*text, *(c.name + c.arguments for c in calls)]
        return estimate_usage(self._count, messages, request.tools, completion, reasoning or "")

    @property
    def _url(self) -> str:
        return self.spec.base_url.rstrip("/") + "/chat/completions"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if request.tools:
            validate_tools(request.tools)
        body = request_body(self.spec, request, stream=False)
        started = time.perf_counter()
        async with self._client() as client:
            try:
                response = await client.post(self._url, json=body)
            except httpx.HTTPError as exc:
                raise BackendError(f"model backend '{self.name}' at {self.spec.base_url} failed: {exc}") from exc
        if response.status_code >= 400:
            raise _backend_error(self.name, response.status_code, response.text)
        elapsed = (time.perf_counter() - started) * 1000
        data = response.json()
        choice = (data.get("choices") or [{}])[0]
        raw = choice.get("message") or {}
        reasoning = raw.get("reasoning_content") or raw.get("reasoning")
        content = raw.get("content")
        if content and _splits_thinking(self.spec, request):
            splitter = ScaffoldSplitter()
            more, content = splitter.feed(content)
            tail_reasoning, tail_content = splitter.flush()
            reasoning = (reasoning or "") + more + tail_reasoning or None
            content = content + tail_content
        calls = [ToolCall(id=c.get("id") or ToolCall("", "").id, name=c["function"]["name"],
                          arguments=c["function"].get("arguments") or "{}") for c in raw.get("tool_calls") or []]
        replied, sent_calls = content or "", list(calls)
        if request.tools and content:
            # Servers that do not parse tool calls themselves leave them in the text.
            content, parsed = parse_tool_calls(content, request.tools)
            calls = calls or parsed
        calls = dedupe_calls(calls)
        finish = "tool_calls" if calls else choice.get("finish_reason") or "stop"
        message = Message(role="assistant", content=content, tool_calls=calls, reasoning_content=reasoning)
        usage = _usage(data.get("usage")) or self._estimate(request, [replied], sent_calls, reasoning)
        return ChatResponse(model=self.name, message=message,
                            finish_reason=finish if finish in ("stop", "length", "tool_calls") else "stop",
                            usage=usage, timings=Timings(ttft_ms=elapsed, latency_ms=elapsed),
                            logprobs=_logprobs(choice) if request.logprobs else None)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if request.tools:
            validate_tools(request.tools)
        body = request_body(self.spec, request, stream=True)
        started = time.perf_counter()
        first: float | None = None
        splitter = ScaffoldSplitter() if _splits_thinking(self.spec, request) else None
        calls: dict[int, dict[str, str]] = {}
        finish, usage = "stop", None
        text_seen: list[str] = []
        reasoning_seen: list[str] = []
        guard = MarkupGuard(request.tools) if request.tools else None
        async with self._client() as client:
            try:
                async with client.stream("POST", self._url, json=body) as response:
                    if response.status_code >= 400:
                        raise _backend_error(self.name, response.status_code, (await response.aread()).decode(errors="replace"))
                    async for data in _sse_data(response):
                        if first is None:
                            first = time.perf_counter()
                        usage = _usage(data.get("usage")) or usage
                        for choice in data.get("choices") or []:
                            delta = choice.get("delta") or {}
                            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                            content = delta.get("content")
                            if content and splitter is not None:
                                more, content = splitter.feed(content)
                                reasoning = (reasoning or "") + more
                            if content:
                                text_seen.append(content)
                                content = guard.feed(content) if guard is not None else content
                            if reasoning:
                                reasoning_seen.append(reasoning)
                            logprobs = _logprobs(choice) if request.logprobs else []
                            if reasoning or content or logprobs:
                                yield StreamEvent(content=content or None, reasoning_content=reasoning or None,
                                                  logprobs=logprobs)
                            for call in delta.get("tool_calls") or []:
                                slot = calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
                                slot["id"] = call.get("id") or slot["id"]
                                function = call.get("function") or {}
                                slot["name"] += function.get("name") or ""
                                slot["arguments"] += function.get("arguments") or ""
                            finish = choice.get("finish_reason") or finish
            except httpx.HTTPError as exc:
                raise BackendError(f"model backend '{self.name}' at {self.spec.base_url} failed: {exc}") from exc
        if splitter is not None:
            reasoning, content = splitter.flush()
            if content:
                text_seen.append(content)
                content = guard.feed(content) if guard is not None else content
            if reasoning:
                reasoning_seen.append(reasoning)
            if reasoning or content:
                yield StreamEvent(content=content or None, reasoning_content=reasoning or None)
        tool_calls = [ToolCall(id=c["id"] or ToolCall("", "").id, name=c["name"], arguments=c["arguments"] or "{}")
                      for _, c in sorted(calls.items())]
        sent_calls = list(tool_calls)
        if guard is not None:
            # What the guard held back: calls the server left in the text, and any prose after them.
            tail = "".join(text_seen)[len(guard.text):] if guard.stopped else guard.flush()
            rest, parsed = parse_tool_calls(tail, request.tools) if guard.stopped else (tail, [])
            tool_calls = tool_calls or parsed
            if rest:
                yield StreamEvent(content=rest)
        tool_calls = dedupe_calls(tool_calls)
        if tool_calls:
            finish = "tool_calls"
        now = time.perf_counter()
        yield StreamEvent(
            tool_calls=tool_calls,
            finish_reason=finish if finish in ("stop", "length", "tool_calls") else "stop",
            usage=usage or self._estimate(request, text_seen, sent_calls, "".join(reasoning_seen)),
            timings=Timings(ttft_ms=((first or now) - started) * 1000, latency_ms=(now - started) * 1000),
        )


async def _sse_data(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except json.JSONDecodeError:
            continue


def _backend_error(name: str, status: int, body: str) -> BackendError:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:500]
    error = BackendError(f"model backend '{name}' answered {status}: {message}")
    if 400 <= status < 500:
        error.status_code = status
    return error
