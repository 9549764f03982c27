"""Authentication: every API request carries a valid key (``Authorization: Bearer``)."""

from __future__ import annotations

from fastapi import Request

from sovereign.governance.keys import Principal


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key")


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: resolve the caller, or raise 401 saying what is wrong with the key."""
    services = request.app.state.services
    if not services.settings.server.require_api_key:
        principal = services.keys.local_principal()  # keys off: every caller is the local admin
    else:
        principal = services.keys.authenticate(_bearer(request))
    request.state.principal = principal
    return principal
