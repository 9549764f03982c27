"""Egress proof: in offline mode a real request that would reach a remote model backend and an
HTTP tool opens no connection to any non-loopback address — checked at the socket level with a
``sys.addaudithook`` on ``socket.connect`` / ``socket.getaddrinfo`` (which also blocks any such
attempt), and again inside an empty network namespace (``unshare -n``) when the kernel allows it.
Positive controls show the hook does see real connections (loopback) and direct attempts."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sovereign.errors import EgressDeniedError
from sovereign.governance.audit import AuditLog, audit_egress
from sovereign.governance.egress import EgressGate
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.openai_backend import OpenAICompatibleModel
from sovereign.kernel.registry import ModelSpec
from sovereign.store import Database
from sovereign.tools.base import ToolError
from sovereign.tools.http import http_tool

REMOTE_MODEL = ModelSpec(name="remote-deepseek", backend="openai", base_url="https://api.deepseek.com/v1",
                         remote_name="deepseek-chat")
REMOTE_PAGE = "https://example.com/attack?q=1"


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class SocketRecorder:
    """Records every connect/DNS lookup while active; refuses non-loopback connects outright."""

    active: bool = False
    connects: list = field(default_factory=list)
    lookups: list = field(default_factory=list)

    def hook(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "socket.connect":
            address = args[1]
            self.connects.append(address)
            if not _is_loopback(address):
                raise PermissionError(f"test audit hook: connection to {address!r} blocked")
        elif event == "socket.getaddrinfo":
            self.lookups.append(args[0])

    def non_loopback(self) -> list:
        return [a for a in self.connects if not _is_loopback(a)]

    def remote_lookups(self) -> list:
        return [h for h in self.lookups
                if (h.decode() if isinstance(h, bytes) else str(h)) not in ("localhost", "127.0.0.1", "::1")]


_RECORDER = SocketRecorder()
sys.addaudithook(_RECORDER.hook)  # audit hooks cannot be removed; it is inert unless active


@pytest.fixture
def recorder():
    _RECORDER.connects.clear()
    _RECORDER.lookups.clear()
    _RECORDER.active = True
    yield _RECORDER
    _RECORDER.active = False


@pytest.fixture
def audit(tmp_path):
    db = Database(tmp_path / "egress.db")
    yield AuditLog(db)
    db.close()


class _FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server API
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        usage = {"prompt_tokens": 3, "completion_tokens": 1}
        if request.get("stream"):
            chunks = [{"choices": [{"delta": {"content": "pong"}, "finish_reason": None}]},
                      {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage}]
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            kind = "text/event-stream"
        else:
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "pong"},
                                            "finish_reason": "stop"}], "usage": usage})
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _chat() -> ChatRequest:
    return ChatRequest(model="remote-deepseek", messages=[Message(role="user", content="ping")], max_tokens=8)


async def _offline_attempts(gate: EgressGate) -> list[str]:
    """A remote-backend chat and an HTTP-tool fetch; returns how each was refused."""
    outcomes = []
    backend = OpenAICompatibleModel(REMOTE_MODEL, gate, api_key="sk-test-" + "x" * 24)
    try:
        await backend.complete(_chat())
        outcomes.append("backend: CONNECTED")
    except EgressDeniedError as exc:
        outcomes.append(f"backend: {exc.code}")
    fetch = http_tool(gate)
    try:
        await fetch.call({"url": REMOTE_PAGE})
        outcomes.append("http: CONNECTED")
    except ToolError as exc:
        outcomes.append(f"http: {exc.code}")
    return outcomes


def test_offline_mode_attempts_no_outbound_connection(recorder, audit):
    gate = EgressGate(mode="offline", on_decision=audit_egress(audit))
    outcomes = asyncio.run(_offline_attempts(gate))
    assert outcomes == ["backend: egress_denied", "http: egress_denied"]
    assert recorder.non_loopback() == [] and recorder.connects == []
    assert recorder.remote_lookups() == []  # not even DNS
    refused = [e.data for e in audit.entries(kind="egress") if not e.data["allowed"]]
    assert {r["host"] for r in refused} == {"api.deepseek.com", "example.com"}
    assert all("offline" in r["reason"] for r in refused)


def test_allowlist_refuses_unlisted_hosts_before_any_socket(recorder):
    gate = EgressGate(mode="allowlist", allow_hosts=["api.openai.com"])
    assert asyncio.run(_offline_attempts(gate)) == ["backend: egress_denied", "http: egress_denied"]
    assert recorder.connects == [] and recorder.remote_lookups() == []


def test_loopback_is_not_egress_and_the_hook_sees_real_connections(recorder, loopback_server):
    """Positive control: the same backend and tool reach a loopback server, and the hook sees it."""
    gate = EgressGate(mode="offline")
    spec = ModelSpec(name="loop", backend="openai", base_url=loopback_server + "/v1")
    response = asyncio.run(OpenAICompatibleModel(spec, gate).complete(_chat()))
    assert response.message.content == "pong"
    page = asyncio.run(http_tool(gate).call({"url": loopback_server + "/page"}))
    assert "hello" in page
    assert recorder.connects and recorder.non_loopback() == []
    assert all(addr[0] == "127.0.0.1" for addr in recorder.connects)


def test_hook_catches_a_direct_non_loopback_attempt(recorder):
    """Positive control: code that bypassed the gate would be seen (and stopped) by the hook."""
    with socket.socket() as sock, pytest.raises(PermissionError):
        sock.connect(("203.0.113.7", 443))  # TEST-NET-3
    assert recorder.non_loopback() == [("203.0.113.7", 443)]


def test_remote_model_over_the_api_is_refused_offline(recorder, tmp_path, monkeypatch):
    """End to end through the server: a chat request for a remote model gets a clear 403."""
    from fastapi.testclient import TestClient

    from sovereign.config import load_settings
    from sovereign.server.app import create_app
    from sovereign.services import Services

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(textwrap.dedent("""
        [[models]]
        name = "remote-deepseek"
        backend = "openai"
        base_url = "https://api.deepseek.com/v1"
        remote_name = "deepseek-chat"
    """))
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = Services.open(load_settings(home))
    services.egress.on_decision = audit_egress(AuditLog(services.db))
    _, secret = services.keys.create_key(services.keys.ensure_admin())
    try:
        with TestClient(create_app(services, preload=False)) as client:
            reply = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                                json={"model": "remote-deepseek", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 403, reply.text
        assert reply.json()["error"]["code"] == "egress_denied"
        assert "offline" in reply.json()["error"]["message"]
        assert recorder.non_loopback() == [] and recorder.remote_lookups() == []
        assert AuditLog(services.db).entries(kind="egress")[-1].data["allowed"] is False
    finally:
        services.close()


_NAMESPACE_SCRIPT = """
import asyncio, errno, json, socket, sys
sys.path.insert(0, {tests!r})
import test_governance_egress as t
from sovereign.governance.egress import EgressGate
t._RECORDER.active = True
outcomes = asyncio.run(t._offline_attempts(EgressGate(mode="offline")))
t._RECORDER.active = False
# Control: the namespace really has no network (a direct connect cannot succeed).
try:
    socket.create_connection(("203.0.113.7", 443), timeout=2)
    control = "connected"
except OSError as exc:
    control = errno.errorcode.get(exc.errno, str(exc))
print(json.dumps({{"outcomes": outcomes, "connects": [list(map(str, a)) for a in t._RECORDER.connects],
                  "lookups": [str(h) for h in t._RECORDER.lookups], "control": control}}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) not installed")
def test_offline_mode_inside_an_empty_network_namespace():
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    tests = str(Path(__file__).parent)
    script = _NAMESPACE_SCRIPT.format(tests=tests)
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outcomes"] == ["backend: egress_denied", "http: egress_denied"]
    assert report["connects"] == [] and report["lookups"] == []
    assert report["control"] in ("ENETUNREACH", "EHOSTUNREACH", "EACCES", "EPERM")
