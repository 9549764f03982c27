"""HTTP fetch goes through the egress gate: refused (clearly, before any socket) in offline
mode and for hosts off the allowlist; loopback is reachable."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sovereign.governance.egress import EgressGate
from sovereign.tools import ToolError
from sovereign.tools.http import http_tool


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/redirect-out":
            self.send_response(302)
            self.send_header("Location", "http://example.com/")
            self.end_headers()
            return
        body = b"hello from loopback " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch(gate, **arguments):
    return asyncio.run(http_tool(gate).call(arguments))


def test_offline_refuses_with_a_clear_message():
    decisions = []
    gate = EgressGate(on_decision=lambda host, purpose, allowed, reason: decisions.append((host, allowed)))
    with pytest.raises(ToolError) as caught:
        fetch(gate, url="https://example.com/data")
    assert "refused" in caught.value.message and "offline" in caught.value.message
    assert caught.value.code == "egress_denied"
    assert decisions == [("example.com", False)]


def test_allowlist_refuses_other_hosts():
    with pytest.raises(ToolError, match="not on the egress allowlist"):
        fetch(EgressGate(mode="allowlist", allow_hosts=["api.example.org"]), url="http://example.com/")


def test_loopback_is_allowed_offline(loopback_url):
    text = fetch(EgressGate(), url=loopback_url + "/ping")
    assert text.startswith("HTTP 200")
    assert "hello from loopback /ping" in text


def test_redirects_leaving_loopback_are_refused(loopback_url):
    with pytest.raises(ToolError, match="offline"):
        fetch(EgressGate(), url=loopback_url + "/redirect-out")


def test_only_http_schemes_and_known_methods():
    with pytest.raises(ToolError, match="only http and https"):
        fetch(EgressGate(), url="file:///etc/passwd")
    with pytest.raises(ToolError, match="unsupported HTTP method"):
        fetch(EgressGate(), url="http://127.0.0.1:9/", method="TRACE")


def test_http_fetch_needs_approval():
    tool = http_tool(EgressGate())
    assert tool.risky and tool.needs_approval
