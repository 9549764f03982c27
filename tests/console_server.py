"""A real console server for browser tests: ``create_app`` under uvicorn on loopback, in a
thread, on a fresh ``SOVEREIGN_HOME``; the model is a deterministic double (``FunctionModel``
from ``sovereign.testing``) unless a test installs the real embedded model."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import uvicorn

from sovereign.kernel.messages import ChatRequest, ChatResponse
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.testing import FunctionModel, serve_every_tier, text_response, tool_response

PRICED = "console-priced"  # a registry entry with a price, served by the double: spend moves
NOTE = {"path": "note.txt", "content": "approved from the console"}


def console_answer(request: ChatRequest) -> ChatResponse:
    """Chat: a greeting with reasoning. An agent with tools: write a note, then report it."""
    if request.tools:
        if any(m.role == "tool" for m in request.messages):
            return text_response("The note is written.")
        return tool_response(("write_file", json.dumps(NOTE)))
    return text_response("Hello from the console double, streamed to your browser.",
                         reasoning="The user greets me; I should greet them back.")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ConsoleServer:
    """``create_app(services)`` served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, home: Path) -> None:
        from conftest import ADMIN_KEY, free_port, open_api_services

        self.services = open_api_services(home)
        self.double = FunctionModel(console_answer, name="console-double")
        serve_every_tier(self.services, self.double)
        self.services.registry.add(ModelSpec(name=PRICED, backend="in_process", licence="test double",
                                             jurisdiction="local", tier="small",
                                             prices=PriceSheet(cached_input=10.0, input=50.0, output=100.0)))
        self.services.models[PRICED] = self.double
        from sovereign.server.app import create_app

        self.app = create_app(self.services, preload=False)
        self.admin_key = ADMIN_KEY
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ConsoleServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the console server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
        self.services.close()
