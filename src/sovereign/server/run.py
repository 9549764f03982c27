"""Serve the app with uvicorn, configured so that no client is left without an answer.

- ``timeout_keep_alive`` is longer than the idle expiry of common client pools (httpx and the
  OpenAI SDK keep idle connections 5 s; uvicorn's default closes them after 5 s too). With equal
  timers a client reuses a connection at the moment the server closes it, and that request dies
  as "Server disconnected without sending a response" — a dropped connection under load.
- ``backlog`` is large enough for bursts of new connections.
- No ``limit_concurrency``: uvicorn would answer a bare 503 text; the model's own queue
  (``[server] max_queue``) answers an overload with 503 in the error shape and ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

KEEP_ALIVE_S = 75
BACKLOG = 4096


def run_server(app: Any, *, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_keep_alive=KEEP_ALIVE_S, backlog=BACKLOG)
