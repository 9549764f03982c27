"""``/v1/responses``: the OpenAI Responses API on the governed path.

``POST`` runs one model turn (text or message-list input, ``instructions``, function tools, the
model's calls returned as ``function_call`` items), streamed as Responses events or returned
whole; ``previous_response_id`` continues a stored conversation of the same caller; ``store:
false`` keeps nothing. ``GET`` / ``DELETE /v1/responses/{id}`` read and remove a stored one.
The model call is a ``GovernedModel`` call like chat completions: caps, ledger and audit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sovereign.errors import InvalidRequestError, SovereignError
from sovereign.governance.governed_model import GovernedModel
from sovereign.kernel.messages import StreamEvent
from sovereign.server.errors import internal_error_body
from sovereign.server.responses_format import OutputBuilder, ResponseMeta, error_event
from sovereign.server.responses_schema import ResponsesRequest
from sovereign.server.responses_store import ResponseStore

__all__ = ["router"]

router = APIRouter(tags=["responses"])


def _store(request: Request) -> ResponseStore:
    return ResponseStore(request.app.state.services.db)


@router.post("/v1/responses")
async def create_response(body: ResponsesRequest, request: Request):
    services = request.app.state.services
    principal = request.state.principal
    store = _store(request)
    history = [] if body.previous_response_id is None else \
        store.get(body.previous_response_id, principal.identity_id, param="previous_response_id").messages
    chat, new = body.to_kernel(services.settings.model_for("instant"), history)
    if chat.model == "auto":
        raise InvalidRequestError("model 'auto' (the router) is served on /v1/chat/completions; name a model here",
                                  param="model")
    response_id = "resp_" + uuid.uuid4().hex[:24]
    model = await services.governed_model(principal, chat.model, request_id=response_id)
    builder = OutputBuilder(ResponseMeta(response_id, int(time.time()), chat.model, body))

    def save(final: dict) -> None:
        if body.store:
            store.put(response_id, principal.identity_id, chat.model, body.previous_response_id,
                      [*history, *new, builder.message()], final)

    metrics = request.app.state.metrics
    metrics.in_flight.inc()
    events = model.stream(chat)
    if not body.stream:
        try:
            async for event in events:
                builder.feed(event)
        finally:
            metrics.in_flight.dec()
        final = builder.finish_events(model.last.cost_usd)[-1]["response"]
        save(final)
        return final
    try:
        first = await anext(events)  # a refused reservation is an HTTP error, not a stream event
    except StopAsyncIteration:
        first = StreamEvent(finish_reason="stop")
    except BaseException:
        metrics.in_flight.dec()
        raise
    return StreamingResponse(_sse(request, model, builder, first, events, save),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _line(event: dict) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


async def _sse(request: Request, model: GovernedModel, builder: OutputBuilder, first: StreamEvent, events: AsyncIterator[StreamEvent],
               save: Callable[[dict], None]) -> AsyncIterator[str]:
    try:
        for event in builder.start():
            yield _line(event)
        event = first
        while True:
            for out in builder.feed(event):
                yield _line(out)
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
        closing = builder.finish_events(model.last.cost_usd if model.last else None)
        save(closing[-1]["response"])
        for out in closing:
            yield _line(out)
    except SovereignError as exc:
        yield _line(error_event(builder.next_sequence(), exc.message, exc.code, exc.param))
    except Exception:  # headers are sent: end the stream with an error event, never a reset
        body = internal_error_body(f"responses stream {builder.meta.id}")["error"]
        yield _line(error_event(builder.next_sequence(), body["message"], body["code"]))
    finally:
        await events.aclose()  # an abandoned stream releases its reservation
        request.app.state.metrics.in_flight.dec()


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict:
    return _store(request).get(response_id, request.state.principal.identity_id).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict:
    _store(request).delete(response_id, request.state.principal.identity_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}
