"""Tracing: OpenTelemetry spans on the governed path, named per the GenAI semantic conventions.

- ``invoke_agent {agent}``: one per agent run (fresh or resumed), the parent of everything below.
- ``chat {model}``: each model call, from a ``TracedModel`` wrapped around any ``Model``
  (``complete`` and ``stream``) — so every interface that gets its models from ``Services`` is
  traced without code of its own.
- ``execute_tool {tool}``: each tool execution in a run (a tool that calls a model or runs a
  sub-agent nests those under it).

Off by default (``[tracing] enabled``). Spans go to an OTLP/HTTP collector when
``otlp_endpoint`` is set; that endpoint passes the egress gate when tracing starts (loopback is
always allowed; a remote one in offline mode is refused then, with the gate's reason), and the
exporter's HTTP session will reach no other host without the gate. Message content (prompts,
answers, tool arguments and results) is recorded only with ``capture_content = true``.
Each ``Tracing`` has its own ``TracerProvider``: nothing global is set.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from sovereign import __version__
from sovereign.errors import ConfigError, EgressDeniedError

if TYPE_CHECKING:
    from sovereign.config import TracingSettings
    from sovereign.governance.egress import EgressGate
    from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, StreamEvent, Usage
    from sovereign.kernel.protocol import Model

__all__ = ["TracedModel", "Tracing", "provider_name"]

_PROVIDERS = {"llama_cpp": "llama.cpp", "openai": "openai"}


def provider_name(model: Any) -> str:
    """The ``gen_ai.provider.name`` of a backend: ``llama.cpp`` for the embedded kernel,
    ``openai`` for an OpenAI-compatible endpoint, ``sovereign.testing`` for the test doubles."""
    backend = getattr(getattr(model, "spec", None), "backend", None)
    if backend in _PROVIDERS:
        return _PROVIDERS[backend]
    module = type(model).__module__
    if module.startswith("sovereign.testing"):
        return "sovereign.testing"
    return "sovereign"


class _GatedSession(requests.Session):
    """The exporter's HTTP session: its own endpoint was allowed by the egress gate when tracing
    started; any other URL (a redirect) asks the gate again. No proxies from the environment."""

    def __init__(self, endpoint: str, gate: EgressGate) -> None:
        super().__init__()
        self.trust_env = False
        self.endpoint, self.gate = endpoint, gate

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Every request goes through here, redirects included.
        if request.url != self.endpoint:
            self.gate.check(str(request.url), purpose="trace export (OTLP)")
        return super().send(request, **kwargs)


@dataclass
class Tracing:
    """Spans for one running OS. Build with ``from_settings``; tests pass their own provider
    (with an in-memory exporter)."""

    provider: TracerProvider
    capture_content: bool = False

    def __post_init__(self) -> None:
        self.tracer = self.provider.get_tracer("sovereign", __version__)

    @classmethod
    def from_settings(cls, settings: TracingSettings, egress: EgressGate) -> Tracing | None:
        """``None`` when tracing is off; ``EgressDeniedError`` when the OTLP endpoint may not
        be reached (checked here, at start-up, not at the first export)."""
        if not settings.enabled:
            return None
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name,
                                                            "service.version": __version__}))
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings.otlp_endpoint
            try:
                egress.check(endpoint, purpose="trace export (OTLP)")
            except EgressDeniedError as exc:
                raise ConfigError(f"tracing.otlp_endpoint cannot be used: {exc.message}", code="egress_denied") from exc
            exporter = OTLPSpanExporter(endpoint=endpoint, session=_GatedSession(endpoint, egress), timeout=5)
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, capture_content=settings.capture_content)

    def shutdown(self) -> None:
        """Export what is pending and stop."""
        self.provider.shutdown()

    # --- models --------------------------------------------------------------------------

    def wrap(self, model: Model, *, provider: str | None = None) -> Model:
        """``model`` traced (``chat {model}`` spans); a model already traced is returned as is."""
        if isinstance(model, TracedModel):
            return model
        return TracedModel(model, self, provider or provider_name(model))

    def start_chat(self, request: ChatRequest, provider: str) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": request.model,
        }
        for key, value in (("max_tokens", request.max_tokens), ("temperature", request.temperature),
                           ("top_p", request.top_p), ("seed", request.seed)):
            if value is not None:
                attributes[f"gen_ai.request.{key}"] = value
        if request.stop:
            attributes["gen_ai.request.stop_sequences"] = list(request.stop)
        if self.capture_content:
            attributes["gen_ai.input.messages"] = _messages_json(request.messages)
            if request.tools:
                attributes["gen_ai.tool.definitions"] = json.dumps(
                    [{"type": "function", "name": t.name, "description": t.description} for t in request.tools])
        return self.tracer.start_span(f"chat {request.model}", kind=SpanKind.CLIENT, attributes=attributes)

    def end_chat(self, span: Span, *, model: str, message: Message | None, finish_reason: str | None,
                 usage: Usage | None, ttft_ms: float | None = None) -> None:
        span.set_attribute("gen_ai.response.model", model)
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
            if usage.reasoning_tokens:
                span.set_attribute("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens)
        if ttft_ms is not None:
            span.set_attribute("sovereign.time_to_first_token_ms", round(ttft_ms, 3))
        if self.capture_content and message is not None:
            span.set_attribute("gen_ai.output.messages", _messages_json([message], finish_reason))
        span.end()

    # --- agent runs and tools ------------------------------------------------------------

    @contextmanager
    def agent_run(self, agent: str, run_id: str, *, model: str | None = None, agent_id: str | None = None,
                  owner: str | None = None) -> Iterator[Span]:
        """The ``invoke_agent`` span of one run, current while the run is driven."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
            "gen_ai.agent.id": agent_id or agent, "gen_ai.conversation.id": run_id, "sovereign.run.id": run_id,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        if owner:
            attributes["sovereign.owner"] = owner
        with self.tracer.start_as_current_span(f"invoke_agent {agent}", kind=SpanKind.INTERNAL,
                                               attributes=attributes) as span:
            yield span

    def end_run(self, span: Span, *, status: str, stop_reason: str, usage: Usage, answer: str | None) -> None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        span.set_attribute("sovereign.run.status", status)
        span.set_attribute("sovereign.run.stop_reason", stop_reason)
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, stop_reason))
        if self.capture_content and answer is not None:
            span.set_attribute("gen_ai.output.messages", _messages_json_text(answer))

    @contextmanager
    def tool_call(self, name: str, call_id: str, *, arguments: str | None = None,
                  description: str | None = None) -> Iterator[Span]:
        """The ``execute_tool`` span of one tool execution, current while the tool runs."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
        }
        if description:
            attributes["gen_ai.tool.description"] = description[:500]
        if self.capture_content and arguments is not None:
            attributes["gen_ai.tool.call.arguments"] = arguments
        with self.tracer.start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL,
                                               attributes=attributes) as span:
            yield span

    def end_tool(self, span: Span, *, ok: bool, error: str | None, result: str) -> None:
        if not ok:
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR, (error or "")[:500]))
        if self.capture_content:
            span.set_attribute("gen_ai.tool.call.result", result)


class TracedModel:
    """Any ``Model``, with a ``chat {model}`` span around each call; every other attribute
    (``ready``, ``count_tokens``, ``queue_depth``, ``close`` ...) is the wrapped model's."""

    def __init__(self, model: Model, tracing: Tracing, provider: str) -> None:
        self.inner, self.tracing, self.provider = model, tracing, provider
        self.name = model.name

    def __getattr__(self, item: str) -> Any:
        if item == "inner":  # not set yet: no recursion
            raise AttributeError(item)
        return getattr(self.inner, item)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        span = self.tracing.start_chat(request, self.provider)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
                response = await self.inner.complete(request)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.end()
            raise
        self.tracing.end_chat(span, model=response.model, message=response.message,
                              finish_reason=response.finish_reason, usage=response.usage,
                              ttft_ms=response.timings.ttft_ms or None)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        from sovereign.kernel.messages import Message

        span = self.tracing.start_chat(request, self.provider)
        started = time.perf_counter()
        first: float | None = None
        finish, usage, parts, calls = None, None, [], []
        try:
            async for event in self.inner.stream(request):
                if first is None and (event.content or event.reasoning_content or event.tool_calls):
                    first = (time.perf_counter() - started) * 1000
                if event.content and self.tracing.capture_content:
                    parts.append(event.content)
                calls.extend(event.tool_calls)
                finish = event.finish_reason or finish
                usage = event.usage or usage
                yield event
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # the consumer stopping early is not an error
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
                span.set_attribute("error.type", type(exc).__name__)
            self.tracing.end_chat(span, model=self.name, message=None, finish_reason=finish, usage=usage,
                                  ttft_ms=first)
            raise
        message = Message(role="assistant", content="".join(parts) or None, tool_calls=calls)
        self.tracing.end_chat(span, model=self.name, message=message, finish_reason=finish, usage=usage,
                              ttft_ms=first)


def _messages_json(messages: list[Message], finish_reason: str | None = None) -> str:
    """Messages in the GenAI conventions' shape (role + parts), as the JSON string OTel carries."""
    out = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        if message.reasoning_content:
            parts.append({"type": "reasoning", "content": message.reasoning_content})
        if message.content:
            kind = "tool_call_response" if message.role == "tool" else "text"
            part: dict[str, Any] = {"type": kind, ("response" if kind == "tool_call_response" else "content"):
                                    message.content}
            if message.tool_call_id:
                part["id"] = message.tool_call_id
            parts.append(part)
        for call in message.tool_calls:
            parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
        entry: dict[str, Any] = {"role": message.role, "parts": parts}
        if finish_reason:
            entry["finish_reason"] = finish_reason
        out.append(entry)
    return json.dumps(out, ensure_ascii=False)


def _messages_json_text(text: str) -> str:
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)
