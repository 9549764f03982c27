"""Tracing on the governed path (OpenTelemetry, GenAI semantic conventions): the golden span tree
of an agent run with the deterministic scripted model (sovereign.testing), content only when
enabled, streaming, the services' models and the HTTP API traced without per-interface code,
OTLP export to a real loopback receiver, and a remote endpoint refused in offline mode."""

from __future__ import annotations

import asyncio
import http.server
import threading

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sovereign.agent import Agent, Runner, RunStore
from sovereign.config import load_settings
from sovereign.errors import ConfigError
from sovereign.governance.tracing import TracedModel, Tracing
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.registry import ModelSpec
from sovereign.services import Services
from sovereign.store import Database
from sovereign.testing import ScriptedModel, TestModel, text_response, tool_response
from sovereign.tools import tool
from sovereign.tools.base import ToolError

TASK = "What is 2 plus 3? secret-task-words"


def traced(capture_content: bool = False) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, capture_content=capture_content), exporter


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def run_calc(tracing: Tracing, script: ScriptedModel, tools=None):
    runner = Runner(model=script, store=RunStore(Database(":memory:")), tracing=tracing)
    agent = Agent(name="calc", tools=tools or [add], max_tokens=64, temperature=0.0, owner="id_owner")
    return asyncio.run(runner.run(agent, TASK))


CHAT_KEYS = {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.request.max_tokens",
             "gen_ai.request.temperature", "gen_ai.response.model", "gen_ai.response.finish_reasons",
             "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens"}
AGENT_KEYS = {"gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.agent.id", "gen_ai.conversation.id",
              "gen_ai.request.model", "sovereign.run.id", "sovereign.owner", "gen_ai.usage.input_tokens",
              "gen_ai.usage.output_tokens", "sovereign.run.status", "sovereign.run.stop_reason"}
TOOL_KEYS = {"gen_ai.operation.name", "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.type",
             "gen_ai.tool.description"}


def test_golden_trace_of_an_agent_run():
    tracing, exporter = traced()
    script = ScriptedModel([tool_response(("add", '{"a": 2, "b": 3}')), text_response("5")])
    result = run_calc(tracing, script)
    assert result.ok and result.answer == "5"
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    assert [s.name for s in spans] == ["invoke_agent calc", "chat scripted", "execute_tool add", "chat scripted"]
    root, first, call, second = spans
    assert root.parent is None
    assert all(s.parent.span_id == root.context.span_id for s in (first, call, second))
    assert len({s.context.trace_id for s in spans}) == 1

    assert set(root.attributes) == AGENT_KEYS
    model_calls = [s for s in result.steps if s.kind == "model_call"]
    assert dict(root.attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "calc", "gen_ai.agent.id": "calc",
        "gen_ai.conversation.id": result.run_id, "sovereign.run.id": result.run_id,
        "gen_ai.request.model": "scripted", "sovereign.owner": "id_owner",
        "gen_ai.usage.input_tokens": result.spent.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": result.spent.usage.completion_tokens,
        "sovereign.run.status": "completed", "sovereign.run.stop_reason": "final answer",
    }
    for span, step, finish in ((first, model_calls[0], "tool_calls"), (second, model_calls[1], "stop")):
        assert set(span.attributes) == CHAT_KEYS
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "sovereign.testing"
        assert span.attributes["gen_ai.request.model"] == span.attributes["gen_ai.response.model"] == "scripted"
        assert span.attributes["gen_ai.request.max_tokens"] == 64
        assert span.attributes["gen_ai.request.temperature"] == 0.0
        assert tuple(span.attributes["gen_ai.response.finish_reasons"]) == (finish,)
        assert span.attributes["gen_ai.usage.input_tokens"] == step.usage.prompt_tokens > 0
        assert span.attributes["gen_ai.usage.output_tokens"] == step.usage.completion_tokens > 0
    assert set(call.attributes) == TOOL_KEYS
    assert call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert call.attributes["gen_ai.tool.name"] == "add"
    assert call.attributes["gen_ai.tool.call.id"] == model_calls[0].tool_calls[0].id
    assert call.status.status_code == StatusCode.UNSET
    # No message content unless asked for: neither the task nor the tool's arguments or result.
    for span in spans:
        for value in span.attributes.values():
            assert "secret-task-words" not in str(value) and '"a": 2' not in str(value)


def test_content_is_recorded_only_when_enabled():
    tracing, exporter = traced(capture_content=True)
    script = ScriptedModel([tool_response(("add", '{"a": 2, "b": 3}')), text_response("5")])
    run_calc(tracing, script)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    chat = next(s for s in exporter.get_finished_spans() if s.name == "chat scripted")
    assert "secret-task-words" in chat.attributes["gen_ai.input.messages"]
    assert '"tool_call"' in chat.attributes["gen_ai.output.messages"]
    assert spans["execute_tool add"].attributes["gen_ai.tool.call.arguments"] == '{"a": 2, "b": 3}'
    assert spans["execute_tool add"].attributes["gen_ai.tool.call.result"] == "5"
    assert '"5"' in spans["invoke_agent calc"].attributes["gen_ai.output.messages"]


def test_tool_error_marks_the_tool_span():
    @tool
    def fail(x: int) -> int:
        """Always fails."""
        raise ToolError("no such thing")

    tracing, exporter = traced()
    script = ScriptedModel([tool_response(("fail", '{"x": 1}')), text_response("gave up")])
    run_calc(tracing, script, tools=[fail])
    span = next(s for s in exporter.get_finished_spans() if s.name == "execute_tool fail")
    assert span.status.status_code == StatusCode.ERROR and "no such thing" in span.status.description
    assert span.attributes["error.type"] == "tool_error"


def test_concurrent_tool_calls_nest_under_the_agent():
    tracing, exporter = traced()
    script = ScriptedModel([tool_response(("add", '{"a": 1, "b": 1}'), ("add", '{"a": 2, "b": 2}')),
                            text_response("done")])
    run_calc(tracing, script)
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name.startswith("invoke_agent"))
    tools = [s for s in spans if s.name == "execute_tool add"]
    assert len(tools) == 2 and all(s.parent.span_id == root.context.span_id for s in tools)
    assert len({s.attributes["gen_ai.tool.call.id"] for s in tools}) == 2


def test_streamed_call_is_one_span_with_usage_and_first_token():
    tracing, exporter = traced(capture_content=True)
    model = tracing.wrap(TestModel(name="echo"))
    assert isinstance(model, TracedModel) and tracing.wrap(model) is model
    request = ChatRequest(model="echo", messages=[Message(role="user", content="hello there")], max_tokens=8)

    async def consume():
        return [event async for event in model.stream(request)]

    events = asyncio.run(consume())
    assert "".join(e.content or "" for e in events) == "hello there"
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat echo" and span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.attributes["sovereign.time_to_first_token_ms"] >= 0
    assert "hello there" in span.attributes["gen_ai.output.messages"]


def test_failed_model_call_is_an_error_span():
    tracing, exporter = traced()
    model = tracing.wrap(ScriptedModel([], name="empty"))
    with pytest.raises(AssertionError):
        asyncio.run(model.complete(ChatRequest(model="empty", messages=[Message(role="user", content="x")])))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "AssertionError"


# --- wired: services, HTTP API, OTLP, egress -------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/moved":  # a collector that redirects off the machine
            self.send_response(307)
            self.send_header("Location", "https://collector.example.com/v1/traces")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


def _home(tmp_path, monkeypatch, tracing: str) -> Services:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f"[server]\nrequire_api_key = false\n[tracing]\n{tracing}\n")
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    return Services.open(load_settings(home))


def test_otlp_export_reaches_a_loopback_collector(tmp_path, monkeypatch, receiver):
    services = _home(tmp_path, monkeypatch, f'enabled = true\notlp_endpoint = "{receiver}"')
    services.register(ModelSpec(name="echo", backend="in_process"), TestModel(name="echo"))

    async def call():
        model = await services.model("echo")
        return await model.complete(ChatRequest(model="echo", messages=[Message(role="user", content="hi")]))

    assert asyncio.run(call()).message.content == "hi"
    services.close()  # flushes the batch
    assert [path for path, _ in _Receiver.bodies] == ["/v1/traces"]
    export = ExportTraceServiceRequest.FromString(_Receiver.bodies[0][1])
    spans = [span for rs in export.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert [span.name for span in spans] == ["chat echo"]
    attributes = {a.key: a.value for a in spans[0].attributes}
    assert attributes["gen_ai.provider.name"].string_value == "sovereign.testing"
    resource = {a.key: a.value.string_value for a in export.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "sovereign"


def test_remote_endpoint_is_refused_in_offline_mode(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="tracing.otlp_endpoint.*offline"):
        _home(tmp_path, monkeypatch, 'enabled = true\notlp_endpoint = "https://collector.example.com/v1/traces"')
    (tmp_path / "home" / "config.toml").write_text("")
    services = Services.open(load_settings(tmp_path / "home"))  # the refusal is in the audit log
    (refusal,) = [e for e in services.audit.entries(kind="egress") if not e.data["allowed"]]
    assert refusal.data["host"] == "collector.example.com" and "trace export" in refusal.data["purpose"]
    services.close()


def test_remote_endpoint_allowed_by_the_allowlist(tmp_path, monkeypatch):
    services = _home(tmp_path, monkeypatch,
                     'enabled = true\notlp_endpoint = "https://collector.example.com/v1/traces"\n'
                     '[egress]\nmode = "allowlist"\nallow_hosts = ["collector.example.com"]')
    assert services.tracing is not None
    services.tracing.provider.shutdown()  # nothing was traced: nothing to send
    services.tracing = None
    services.close()


def test_tracing_is_off_by_default(tmp_path, monkeypatch):
    services = _home(tmp_path, monkeypatch, "")
    services.register(ModelSpec(name="echo", backend="in_process"), TestModel(name="echo"))
    assert services.tracing is None and type(services.models["echo"]) is TestModel
    services.close()


def test_http_chat_and_runs_are_traced(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from sovereign.server.app import create_app

    services = _home(tmp_path, monkeypatch, "enabled = true")
    exporter = InMemorySpanExporter()
    services.tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    services.register(ModelSpec(name="echo", backend="in_process"), TestModel(name="echo"))
    app = create_app(services, preload=False)
    app.state.agent_runner = Runner(services, model=ScriptedModel([text_response("Paris")], name="echo"))
    with TestClient(app) as client:
        reply = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "user", "content": "hello"}]})
        assert reply.status_code == 200, reply.text
        run = client.post("/v1/runs", json={"task": "Capital of France?", "wait": True, "model": "echo",
                                            "definition": {"name": "geo"}})
        assert run.status_code == 201, run.text
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("chat echo") == 2 and "invoke_agent geo" in names
    agent = next(s for s in spans if s.name == "invoke_agent geo")
    run_chat = next(s for s in spans if s.name == "chat echo" and s.parent is not None)
    assert run_chat.parent.span_id == agent.context.span_id
    assert agent.attributes["gen_ai.conversation.id"] == run.json()["id"]
    services.close()


@pytest.mark.integration
def test_real_model_chat_span(embedded_model):
    tracing, exporter = traced()
    model = tracing.wrap(embedded_model)
    request = ChatRequest(model=embedded_model.name, messages=[Message(role="user", content="Say hi.")],
                          max_tokens=8, temperature=0.0)
    response = asyncio.run(model.complete(request))
    (span,) = exporter.get_finished_spans()
    assert span.attributes["gen_ai.provider.name"] == "llama.cpp"
    assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens > 0
    assert span.attributes["gen_ai.usage.output_tokens"] == response.usage.completion_tokens > 0
    assert span.attributes["gen_ai.response.model"] == embedded_model.name


def test_exporter_session_asks_the_gate_for_a_redirect(receiver):
    """The endpoint was checked at start-up; a redirect elsewhere meets the egress gate."""
    from sovereign.errors import EgressDeniedError
    from sovereign.governance.egress import EgressGate
    from sovereign.governance.tracing import _GatedSession

    decisions: list = []
    gate = EgressGate(mode="offline", on_decision=lambda host, purpose, ok, why: decisions.append((host, ok)))
    assert _GatedSession(receiver, gate).post(receiver, data=b"x", timeout=5).status_code == 200
    assert decisions == []
    moved = receiver.replace("/v1/traces", "/moved")
    with pytest.raises(EgressDeniedError, match="offline"):
        _GatedSession(moved, gate).post(moved, data=b"x", timeout=5)
    assert decisions == [("collector.example.com", False)]
