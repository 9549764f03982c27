"""Every error leaves the server as ``{"error": {"message", "type", "code", "param"}}``.

- ``SovereignError``: its own status, type and code;
- request validation: 400 naming each bad field (``messages.0.role: ...``);
- ``HTTPException`` (404 for an unknown path, 405, ...): its status;
- anything else: ``ErrorShield`` answers 500 with an error id that is also in the log, with the
  traceback. A failure after a streamed response has started ends that stream cleanly instead.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sovereign.errors import SovereignError

log = logging.getLogger("sovereign.server")

_STATUS_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error"}


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}


def error_response(status: int, message: str, error_type: str, code: str | None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, error_type, code, param), status_code=status, headers=headers)


def sovereign_error_response(exc: SovereignError) -> JSONResponse:
    # 503 (queue full, still loading) is temporary: say when to try again.
    headers = {"Retry-After": "1"} if exc.status_code == 503 else None
    return error_response(exc.status_code, exc.message, exc.error_type, exc.code, exc.param, headers=headers)


def new_error_id() -> str:
    return "err_" + uuid.uuid4().hex[:16]


def internal_error_body(where: str) -> dict:
    """Call inside ``except``: log the current exception with a new error id; the body to send."""
    error_id = new_error_id()
    log.exception("internal error %s in %s", error_id, where)
    return error_body(f"internal server error (error id {error_id}; the server log has the details)",
                      "server_error", "internal_error")


# A location part that is a union member's label, not a field: "str", "list[...]",
# "function-after[...]", "literal['a','b']", a class name ("NamedToolChoice").
_UNION_LABEL = re.compile(r"^(?:[A-Z]\w*|str|int|float|bool|none|dict|list|tuple|set|bytes|[\w-]*[\[(].*)$")


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    kept = [p for p in parts if isinstance(p, int) or p.isdigit() or not _UNION_LABEL.match(p)]
    return ".".join(kept) or "body"


def describe_validation(errors: list[dict]) -> tuple[str, str | None, str]:
    """(message, param, code) for pydantic/FastAPI validation errors, one line per bad field."""
    problems: list[str] = []
    param = None
    for err in errors:
        if err.get("type") == "json_invalid":
            return f"malformed JSON body: {err.get('msg')}", None, "malformed_json"
        where = _where(tuple(err.get("loc", ())))
        if param is None or where.count(".") > param.count("."):
            param = where  # the deepest location: inside a union, the member that was meant
        if err.get("type") == "missing" and where == "body":
            problem = "a JSON object body is required"
        else:
            problem = f"{where}: {err.get('msg')}"
        if problem not in problems:
            problems.append(problem)
    # A bad tool definition keeps the code the kernel gives it, whichever layer finds it first.
    code = "invalid_tool_schema" if param is not None and param.startswith("tools") else "invalid_request"
    return "invalid request: " + "; ".join(problems[:20]), param, code


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SovereignError)
    async def _sovereign(_request: Request, exc: SovereignError) -> JSONResponse:
        return sovereign_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = describe_validation(list(exc.errors()))
        return error_response(400, message, "invalid_request_error", code, param)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        kind = _STATUS_TYPES.get(exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, detail, kind, None, headers=getattr(exc, "headers", None))

    app.add_middleware(ErrorShield)


class ErrorShield:
    """Outermost guard: an unexpected exception becomes a 500 in the error shape, logged with an id.

    If the response had already started (a stream), the body is ended cleanly so the client gets
    a complete HTTP message rather than a reset connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "finished": False}

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["finished"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            body = internal_error_body(f"{scope.get('method')} {scope.get('path')}")
            await _finish(state, send, body)


async def _finish(state: dict, send: Send, body: dict) -> None:
    try:
        if not state["started"]:
            response = JSONResponse(body, status_code=500)
            await send({"type": "http.response.start", "status": 500, "headers": response.raw_headers})
            await send({"type": "http.response.body", "body": response.body})
        elif not state["finished"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:  # the client is gone; nothing left to tell it
        pass
