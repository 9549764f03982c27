"""Every error leaves the server as ``{"error": {"message", "type", "code", "param"}}``."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sovereign.errors import SovereignError


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}


def sovereign_error_response(exc: SovereignError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, exc.error_type, exc.code, exc.param), status_code=exc.status_code
    )


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None, str]:
    problems, first_param, code = [], None, "invalid_request"
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return f"malformed JSON body: {err.get('msg')}", None, "malformed_json"
        where = ".".join(loc) or "body"
        first_param = first_param or where
        problems.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(problems), first_param, code


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SovereignError)
    async def _sovereign(_request: Request, exc: SovereignError) -> JSONResponse:
        return sovereign_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _describe_validation(exc)
        return JSONResponse(error_body(message, "invalid_request_error", code, param), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(error_body(detail, kind, None), status_code=exc.status_code)
