"""Malformed requests get a 4xx in the OpenAI error shape naming the field; anything unexpected
gets a 500 in that shape with an error id that is also in the log (never a bare 500 or a reset)."""

from __future__ import annotations

import logging

import pytest
from conftest import ADMIN_KEY, open_api_services
from fastapi.testclient import TestClient

from sovereign.kernel.messages import ChatResponse, StreamEvent
from sovereign.server.app import create_app
from sovereign.testing import serve_every_tier

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def _error(reply, status: int) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    return error


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice.function"),
        ({"response_format": {"type": "json_schema", "json_schema": "{\"type\": \"object\"}"}}, "response_format.json_schema"),
        ({"thinking": {"type": "enabled", "budget_tokens": "lots"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "maybe"}}, "thinking.type"),
        ({"thinking": "on"}, "thinking"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0"),
        ({"messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}]},
         "messages.0.tool_calls.0.function.arguments"),
        ({"messages": [{"role": "assistant", "tool_calls": "f()"}]}, "messages.0.tool_calls"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]}, "tools.0.function.parameters"),
        ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces allowed"}}]}, "tools.0.function.name"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "missing"}}, "tools": [TOOL]}, "tool_choice.function.name"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}}},
         "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$schema": []}}}},
         "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
         "response_format.json_schema.schema"),
        ({"response_format": "json"}, "response_format"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"stream_options": True}, "stream_options"),
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"max_completion_tokens": -3}, "max_completion_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 3}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 7}, "stop"),
        ({"seed": "random"}, "seed"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"model": 42}, "model"),
    ],
)
def test_malformed_chat_bodies_are_400_naming_the_field(api, extra, param):
    client, _ = api
    body = {"messages": USER, **extra}
    error = _error(client.post("/v1/chat/completions", json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert param.split(".")[0] in error["message"]


@pytest.mark.parametrize("body", [[], [1, 2], "text", 5, None])
def test_a_body_that_is_not_an_object_is_400(api, body):
    client, _ = api
    error = _error(client.post("/v1/chat/completions", json=body), 400)
    assert error["code"] == "invalid_request"


def test_malformed_json_is_400(api):
    client, _ = api
    reply = client.post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert _error(reply, 400)["code"] == "malformed_json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_is_415(api, content_type):
    client, _ = api
    reply = client.post("/v1/chat/completions", content=b'{"messages": []}', headers={"Content-Type": content_type})
    error = _error(reply, 415)
    assert error["code"] == "unsupported_media_type" and content_type.split(";")[0] in error["message"]


def test_a_json_suffix_media_type_and_a_charset_are_accepted(api):
    client, _ = api
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        reply = client.post("/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "ok"}]}',
                            headers={"Content-Type": content_type})
        assert reply.status_code == 200, reply.text


def test_oversized_bodies_are_413_with_or_without_content_length(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    services = open_api_services(tmp_path / "home", "[server]\nmax_body_bytes = 2048\n")
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * 4096 + b'"}]}'
    try:
        with TestClient(create_app(services, preload=False), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            error = _error(client.post("/v1/chat/completions", content=big, headers={"Content-Type": "application/json"}), 413)
            assert "2048" in error["message"] and error["code"] == "request_too_large"

            def chunks():  # no Content-Length: sent chunked
                for start in range(0, len(big), 512):
                    yield big[start:start + 512]

            _error(client.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}), 413)
            small = b'{"messages": [{"role": "user", "content": "fits"}]}'
            reply = client.post("/v1/chat/completions", content=iter([small[:10], small[10:]]),
                                headers={"Content-Type": "application/json"})
            assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "fits"
    finally:
        services.close()


def test_unknown_paths_and_methods_are_in_the_error_shape(api):
    client, _ = api
    assert _error(client.get("/v1/nothing-here"), 404)["type"] == "not_found_error"
    _error(client.delete("/v1/chat/completions"), 405)


def test_malformed_bodies_on_native_routes_are_400(api):
    client, _ = api
    assert _error(client.post("/v1/runs", json={"task": 5}), 400)["param"] == "task"
    assert _error(client.post("/v1/memory", json={"content": ["a"]}), 400)["param"] == "content"
    assert _error(client.post("/v1/keys", json={"models": "all"}), 400)["param"] == "models"
    assert _error(client.put("/v1/spend/caps", json={"scope": "galaxy"}), 400)["param"] == "scope"
    assert _error(client.get("/v1/runs", params={"limit": "many"}), 400)["param"] == "limit"


# --- the catch-all -------------------------------------------------------------------------


class _Broken:
    """A model double with a bug: it fails (RuntimeError) before or after its first event."""

    def __init__(self, after_first: bool) -> None:
        self.after_first = after_first

    async def complete(self, request):  # pragma: no cover - the server streams
        raise RuntimeError("kaboom")

    async def stream(self, request):
        if self.after_first:
            yield StreamEvent(content="partial")
        raise RuntimeError("kaboom: a bug in a backend")
        yield ChatResponse  # unreachable; makes this an async generator in both cases


def _id_in(message: str) -> str:
    start = message.index("err_")
    return message[start:start + 20]


def test_an_unexpected_error_is_a_500_in_the_error_shape_with_an_id_in_the_log(api, caplog):
    client, services = api
    serve_every_tier(services, _Broken(after_first=False))
    with caplog.at_level(logging.ERROR, logger="sovereign.server"):
        reply = client.post("/v1/chat/completions", json={"messages": USER})
    error = _error(reply, 500)
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    error_id = _id_in(error["message"])
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log
    assert "kaboom" not in error["message"]  # internals stay in the log


def test_a_failure_mid_stream_ends_the_stream_with_an_error_event(api, caplog):
    client, services = api
    serve_every_tier(services, _Broken(after_first=True))
    with caplog.at_level(logging.ERROR, logger="sovereign.server"):
        reply = client.post("/v1/chat/completions", json={"messages": USER, "stream": True})
    assert reply.status_code == 200
    events = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    assert "partial" in events[0] and events[-1] == "[DONE]"
    assert '"internal_error"' in events[-2]
    error_id = events[-2][events[-2].index("err_"):][:20]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
