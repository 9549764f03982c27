"""``POST /v1/route``: what ``model: "auto"`` would do with a chat request, without calling a
model — the decision (model, effort, reasons, plan), the breakers of the plan's models and the
reasoning profile that applied. The body is a chat completion request; its ``model`` is ignored."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sovereign.governance.authz import authorize
from sovereign.server.schemas import ChatCompletionRequest

router = APIRouter(tags=["router"])


@router.post("/v1/route")
async def explain_route(body: ChatCompletionRequest, request: Request):
    principal = authorize(request.state.principal)
    services = request.app.state.services
    chat = body.to_kernel("auto")
    return services.router.explain(chat, principal, data_class=body.data_class,
                                   explicit_thinking=body.explicit_thinking)
