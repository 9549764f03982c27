"""Request bodies the API accepts: JSON only (415 otherwise; multipart uploads on the audio upload
routes), at most ``[server] max_body_bytes`` (413).

Checked before any route runs, so an oversized or non-JSON upload never reaches a handler.
A body without ``Content-Length`` (chunked) is read here up to the limit and then replayed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sovereign.server.errors import error_response

_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Routes that take a file upload (OpenAI's audio API is multipart/form-data).
_MULTIPART_PATHS = {"/v1/audio/transcriptions", "/v1/audio/translations"}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestLimits:
    """ASGI middleware enforcing the body's media type and size."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length is not None:
            if not length.strip().isdigit():
                await self._refuse(scope, receive, send, 400, "Content-Length must be a whole number", "invalid_content_length")
                return
            if int(length) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        has_body = chunked or (length is not None and int(length) > 0)
        content_type = headers.get("content-type")
        multipart = scope.get("path") in _MULTIPART_PATHS and (content_type or "").lower().startswith("multipart/form-data")
        if has_body and content_type is not None and not _is_json(content_type) and not multipart:
            wanted = ("multipart/form-data with the audio in a 'file' field" if scope.get("path") in _MULTIPART_PATHS
                      else "JSON (Content-Type: application/json)")
            await self._refuse(scope, receive, send, 415, f"the body must be {wanted}, not '{content_type}'",
                               "unsupported_media_type")
            return
        if chunked and length is None:
            body = await self._read_capped(receive)
            if body is None:
                await self._too_large(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_capped(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._refuse(scope, receive, send, 413,
                           f"the request body is larger than the server's limit of {self.max_body_bytes} bytes "
                           "([server] max_body_bytes)", "request_too_large")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, code: str) -> None:
        # The client may still be sending; closing after the answer is uvicorn's job (no keep-alive
        # on a half-read request), so nothing is drained here.
        response = error_response(status, message, "invalid_request_error", code,
                                  headers={"Connection": "close"})
        await response(scope, receive, send)


def _replay(body: bytes, upstream: Receive) -> Receive:
    """The buffered body once, then the real channel (which reports the client's disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive
