"""``/v1/chat/completions`` (streaming and not) and ``/v1/models``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sovereign.errors import SovereignError
from sovereign.governance.authz import authorize
from sovereign.kernel.messages import ChatRequest, StreamEvent, Timings, Usage
from sovereign.kernel.protocol import collect_stream
from sovereign.server.errors import error_body
from sovereign.server.openai_format import ChunkWriter, completion_json
from sovereign.server.schemas import ChatCompletionRequest

router = APIRouter()


def _worst_case(request: Request, chat: ChatRequest) -> tuple[float, int]:
    """Upper bounds of a call's cost and tokens, reserved against spend caps before dispatch."""
    services = request.app.state.services
    spec = services.registry.get(chat.model)
    prompt = sum(len(m.content or "") + len(m.reasoning_content or "") for m in chat.messages)
    prompt += sum(len(json.dumps(t.parameters)) + len(t.description) for t in chat.tools)
    prompt_tokens = prompt // 2 + 16 * len(chat.messages) + 64  # ≥ 2 characters a token, plus framing
    output = (chat.max_tokens or services.settings.kernel.default_max_tokens) + (chat.thinking.budget_tokens or 0)
    cost = spec.prices.cost(cached_tokens=0, uncached_tokens=prompt_tokens, output_tokens=output)
    return cost, prompt_tokens + output


class _Accounting:
    """Reserve before dispatch; settle, record and audit after; release if the call fails."""

    def __init__(self, request: Request, chat: ChatRequest, request_id: str) -> None:
        self.request, self.chat, self.request_id = request, chat, request_id
        self.services = request.app.state.services
        self.principal = request.state.principal
        cost, tokens = _worst_case(request, chat)
        self.reservation = self.services.spend.reserve(
            self.principal.key_id, self.principal.spend_owner_id, self.principal.agent_id, cost, tokens,
            actor=self.principal.identity_name,
        )

    def settle(self, usage: Usage, timings: Timings) -> float:
        """Ledger row, settled reservation and audit entry, committed together."""
        services, chat = self.services, self.chat
        prices = services.registry.get(chat.model).prices
        with services.db.transaction() as conn:
            cost = services.ledger.record_in(
                conn, model=chat.model, usage=usage, timings=timings, prices=prices,
                principal=self.principal.key_id, request_id=self.request_id,
            )
            services.spend.settle_in(conn, self.reservation, cost, usage.total_tokens, audit=False)
            services.audit.append_in(conn, "model.call", self.principal.identity_name, {
                "request_id": self.request_id, "model": chat.model, "key_id": self.principal.key_id,
                "prompt_tokens": usage.prompt_tokens, "cached_tokens": usage.cached_tokens,
                "completion_tokens": usage.completion_tokens, "reasoning_tokens": usage.reasoning_tokens,
                "cost_usd": cost, "reservation": self.reservation.id,
                "reserved_usd": self.reservation.max_cost_usd, "latency_ms": round(timings.latency_ms, 3),
            })
        self.request.app.state.metrics.observe(chat.model, usage, timings, cost)
        return cost

    def release(self) -> None:
        self.services.spend.release(self.reservation)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    services = request.app.state.services
    chat = body.to_kernel(services.settings.kernel.default_model)
    authorize(request.state.principal, model=chat.model, action="use")
    model = await services.model(chat.model)
    if chat.max_tokens is None and not getattr(model, "bounds_output", False):
        chat.max_tokens = services.settings.kernel.default_max_tokens  # the reservation's worst case holds
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    metrics = request.app.state.metrics
    accounting = _Accounting(request, chat, completion_id)
    metrics.in_flight.inc()
    try:
        if not body.stream:
            response = await collect_stream(chat.model, model.stream(chat))
            cost = accounting.settle(response.usage, response.timings)
            metrics.in_flight.dec()
            return JSONResponse(completion_json(completion_id, created, response, cost))
        events = model.stream(chat)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = StreamEvent(finish_reason="stop", usage=Usage(), timings=Timings())
    except BaseException as exc:
        accounting.release()
        metrics.in_flight.dec()
        if isinstance(exc, SovereignError):
            metrics.requests.labels(chat.model, str(exc.status_code)).inc()
        raise
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    return StreamingResponse(
        _sse(request, chat, first, events, completion_id, created, include_usage, accounting),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    request: Request, chat: ChatRequest, first: StreamEvent, events: AsyncIterator[StreamEvent],
    completion_id: str, created: int, include_usage: bool, accounting: _Accounting,
) -> AsyncIterator[str]:
    writer = ChunkWriter(completion_id, created, chat.model)
    usage, timings = Usage(), Timings()
    settled = False
    try:
        event = first
        while True:
            if event.usage:
                usage = event.usage
            if event.timings:
                timings = event.timings
            for chunk in writer.event(event):
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
        accounting.settle(usage, timings)
        settled = True
        if include_usage:
            yield f"data: {json.dumps(writer.usage(usage, timings))}\n\n"
    except SovereignError as exc:
        yield f"data: {json.dumps(error_body(exc.message, exc.error_type, exc.code, exc.param))}\n\n"
    finally:
        if not settled:
            accounting.release()
        await events.aclose()
        request.app.state.metrics.in_flight.dec()
    yield "data: [DONE]\n\n"


@router.get("/v1/models")
async def list_models(request: Request):
    services = request.app.state.services
    data = []
    for spec in services.registry:
        data.append({
            "id": spec.name, "object": "model", "created": 0, "owned_by": "sovereign",
            "backend": spec.backend, "context_size": spec.context_size, "tier": spec.tier,
            "jurisdiction": spec.jurisdiction, "licence": spec.licence,
            "pricing": {"cached_input": spec.prices.cached_input, "input": spec.prices.input, "output": spec.prices.output},
        })
    return {"object": "list", "data": data}


