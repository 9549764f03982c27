"""``/v1/chat/completions`` (streaming and not)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sovereign.errors import SovereignError
from sovereign.kernel.messages import ChatRequest, StreamEvent, Timings, Usage
from sovereign.kernel.protocol import collect_stream
from sovereign.server.errors import error_body, internal_error_body
from sovereign.server.media_parts import expand_media
from sovereign.server.openai_format import ChunkWriter, completion_json
from sovereign.server.schemas import ChatCompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    services = request.app.state.services
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    await expand_media(body, services, request.state.principal, completion_id)  # images OCR'd, audio transcribed
    chat = body.to_kernel(services.settings.model_for("instant"))
    if chat.model == "auto":
        from sovereign.server.routed_chat import routed_completion

        return await routed_completion(request, body, chat, completion_id, _sse)
    model = await services.governed_model(request.state.principal, chat.model, request_id=completion_id)
    created = int(time.time())
    metrics = request.app.state.metrics
    metrics.in_flight.inc()
    try:
        if not body.stream:
            response = await collect_stream(chat.model, model.stream(chat))
            metrics.in_flight.dec()
            return JSONResponse(completion_json(completion_id, created, response, model.last.cost_usd))
        events = model.stream(chat)
        try:
            first = await anext(events)  # a refused reservation is an HTTP error, not an SSE one
        except StopAsyncIteration:
            first = StreamEvent(finish_reason="stop", usage=Usage(), timings=Timings())
    except BaseException as exc:
        metrics.in_flight.dec()
        if isinstance(exc, SovereignError):
            metrics.requests.labels(chat.model, str(exc.status_code)).inc()
        raise
    include_usage = body.include_usage
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
        if include_usage:
            yield f"data: {json.dumps(writer.usage(usage, timings))}\n\n"
    except SovereignError as exc:
        yield f"data: {json.dumps(error_body(exc.message, exc.error_type, exc.code, exc.param))}\n\n"
    except Exception:  # headers are sent: end the stream with an error event, never a reset
        yield f"data: {json.dumps(internal_error_body('chat stream ' + completion_id))}\n\n"
    finally:
        await events.aclose()  # an abandoned stream releases its reservation
        request.app.state.metrics.in_flight.dec()
    yield "data: [DONE]\n\n"
