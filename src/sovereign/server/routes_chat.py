"""``/v1/chat/completions`` (streaming and not) and ``/v1/models``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sovereign.errors import PermissionDeniedError, SovereignError
from sovereign.kernel.messages import ChatRequest, StreamEvent, Timings, Usage
from sovereign.kernel.protocol import collect_stream
from sovereign.server.errors import error_body, sovereign_error_response
from sovereign.server.openai_format import ChunkWriter, completion_json
from sovereign.server.schemas import ChatCompletionRequest

router = APIRouter()


def _record(request: Request, model_name: str, usage: Usage, timings: Timings, request_id: str) -> float:
    services = request.app.state.services
    principal = request.state.principal
    prices = services.registry.get(model_name).prices
    cost = services.ledger.record(
        model=model_name, usage=usage, timings=timings, prices=prices,
        principal=principal.key_id, request_id=request_id,
    )
    request.app.state.metrics.observe(model_name, usage, timings, cost)
    return cost


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    services = request.app.state.services
    principal = request.state.principal
    chat = body.to_kernel(services.settings.kernel.default_model)
    if not principal.scopes.allows_model(chat.model):
        raise PermissionDeniedError(f"this API key may not use model '{chat.model}'", param="model")
    model = await services.model(chat.model)
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    metrics = request.app.state.metrics
    metrics.in_flight.inc()
    try:
        if not body.stream:
            response = await collect_stream(chat.model, model.stream(chat))
            cost = _record(request, chat.model, response.usage, response.timings, completion_id)
            return JSONResponse(completion_json(completion_id, created, response, cost))
        events = model.stream(chat)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = StreamEvent(finish_reason="stop", usage=Usage(), timings=Timings())
    except SovereignError as exc:
        metrics.requests.labels(chat.model, str(exc.status_code)).inc()
        metrics.in_flight.dec()
        raise
    except BaseException:
        metrics.in_flight.dec()
        raise
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    return StreamingResponse(
        _sse(request, chat, first, events, completion_id, created, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    request: Request, chat: ChatRequest, first: StreamEvent, events: AsyncIterator[StreamEvent],
    completion_id: str, created: int, include_usage: bool,
) -> AsyncIterator[str]:
    writer = ChunkWriter(completion_id, created, chat.model)
    usage, timings = Usage(), Timings()
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
        _record(request, chat.model, usage, timings, completion_id)
        if include_usage:
            yield f"data: {json.dumps(writer.usage(usage, timings))}\n\n"
    except SovereignError as exc:
        yield f"data: {json.dumps(error_body(exc.message, exc.error_type, exc.code, exc.param))}\n\n"
    finally:
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


__all__ = ["router", "sovereign_error_response"]
