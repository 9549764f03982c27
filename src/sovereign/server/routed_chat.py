"""``model: "auto"`` on ``/v1/chat/completions``: the router picks the model and the reasoning
effort; the decision comes back in a ``routing`` field (and ``X-Sovereign-Route-*`` headers,
also on streams)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from sovereign.errors import SovereignError
from sovereign.kernel.messages import ChatRequest
from sovereign.server.openai_format import completion_json
from sovereign.server.schemas import ChatCompletionRequest


async def routed_completion(request: Request, body: ChatCompletionRequest, chat: ChatRequest, completion_id: str,
                            sse: Callable[..., Any]):
    services = request.app.state.services
    principal = request.state.principal
    router = services.router
    created = int(time.time())
    metrics = request.app.state.metrics
    metrics.in_flight.inc()
    options = {"data_class": body.data_class, "explicit_thinking": body.explicit_thinking,
               "request_id": completion_id}
    try:
        if not body.stream:
            response, decision, cost = await router.complete(chat, principal, **options)
            metrics.in_flight.dec()
            payload = completion_json(completion_id, created, response, cost)
            payload["routing"] = decision.to_dict()
            return JSONResponse(payload, headers=decision.headers())
        routed = await router.stream(chat, principal, **options)
    except BaseException as exc:
        metrics.in_flight.dec()
        if isinstance(exc, SovereignError):
            metrics.requests.labels("auto", str(exc.status_code)).inc()
        raise
    served = replace(chat, model=routed.decision.model)
    return StreamingResponse(
        sse(request, served, routed.first, routed.events, completion_id, created, body.include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **routed.decision.headers()},
    )
