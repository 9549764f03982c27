"""Servers for the gateway benchmark: sovereign around a zero-latency model, and a bare peer.

``python _gateway_servers.py sovereign PORT HOME`` or ``python _gateway_servers.py bare PORT``.
"""

from __future__ import annotations

import sys
import time

import uvicorn


def sovereign_app(home: str):
    from sovereign.config import load_settings
    from sovereign.kernel.registry import ModelSpec
    from sovereign.server.app import create_app
    from sovereign.server.bootstrap import bootstrap_admin_key
    from sovereign.services import Services
    from sovereign.testing import TestModel

    services = Services.open(load_settings(home))
    bootstrap_admin_key(services, "sk-bench-key-000000000000")
    services.register(ModelSpec(name="echo", backend="in_process"), TestModel(name="echo"))
    return create_app(services, preload=False)


def bare_app():
    """The same HTTP stack answering the same request shape, with no gateway logic at all."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def completions(request: Request):
        body = await request.json()
        text = body["messages"][-1]["content"]
        return JSONResponse({
            "id": "chatcmpl-bare", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    app = sovereign_app(sys.argv[3]) if kind == "sovereign" else bare_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
