"""HTTP fetch through the egress gate: offline by default, so a fetch gets a clear refusal."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from sovereign.errors import EgressDeniedError
from sovereign.governance.egress import EgressGate
from sovereign.tools.base import Effects, Tool, ToolError, tool

__all__ = ["http_tool"]

_MAX_BYTES = 200_000


def http_tool(egress: EgressGate) -> Tool:
    """``http_fetch``: every request (redirects too) passes ``egress`` before a socket opens."""

    effects = Effects(reads_untrusted=True, source="web", acts_on_world=True, leaves_machine=True,
                      needs_approval=True)

    @tool(effects=effects, timeout=60)
    async def http_fetch(url: str, method: str = "GET", body: str | None = None, max_bytes: int = 50_000) -> str:
        """Fetch a URL over HTTP(S) and return the status, content type and body text.

        Outbound access follows the egress policy; in offline mode only loopback is reachable.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs can be fetched, not '{url}'")
        verb = method.upper()
        if verb not in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"):
            raise ToolError(f"unsupported HTTP method '{method}'")
        limit = max(1, min(max_bytes, _MAX_BYTES))
        try:
            async with egress.client(purpose="tool:http_fetch", timeout=30, follow_redirects=True) as client:
                async with client.stream(verb, url, content=body) as response:
                    data = b""
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > limit:
                            break
        except EgressDeniedError as exc:
            raise ToolError(f"refused: {exc.message}", code="egress_denied") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"request to {url} failed: {exc}") from exc
        text = data[:limit].decode(response.encoding or "utf-8", errors="replace")
        if len(data) > limit:
            text += f"\n... (truncated at {limit} bytes)"
        content_type = response.headers.get("content-type", "")
        return f"HTTP {response.status_code} {response.reason_phrase}\ncontent-type: {content_type}\n\n{text}"

    return http_fetch
