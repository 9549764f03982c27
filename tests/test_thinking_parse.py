"""Reasoning effort and native ``<think>`` blocks: ``reasoning_effort`` none/low/medium/high and
``thinking.budget_tokens`` map to reasoning budgets, and a native thinker's ``<think>…</think>``
(DeepSeek-R1 or Qwen3 served without a reasoning parser) lands in ``reasoning_content``, streamed
and not, from a real loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sovereign.governance.egress import EgressGate
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.kernel.openai_backend import OpenAICompatibleModel
from sovereign.kernel.registry import ModelSpec
from sovereign.server.schemas import ChatCompletionRequest

REPLY = "<think>Six times seven.\nThat is 42.</think>\n\nThe answer is 42."


class _Thinker(BaseHTTPRequestHandler):
    """Replies like a native thinker whose server leaves the think block in the text."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        usage = {"prompt_tokens": 10, "completion_tokens": 20}
        if not body.get("stream"):
            data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                                            "finish_reason": "stop"}], "usage": usage}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(0, len(REPLY), 3):  # tags split across chunks
            chunk = {"choices": [{"index": 0, "delta": {"content": REPLY[i:i + 3]}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture(scope="module")
def thinker():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Thinker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = ModelSpec(name="r1", backend="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1",
                     native_thinking=True)
    yield OpenAICompatibleModel(spec, EgressGate(mode="offline"))
    server.shutdown()


def _ask() -> ChatRequest:
    return ChatRequest(model="r1", messages=[Message(role="user", content="What is 6 * 7?")], max_tokens=64)


def test_native_think_block_is_reasoning_not_content(thinker):
    reply = asyncio.run(thinker.complete(_ask()))
    assert reply.message.reasoning_content == "Six times seven.\nThat is 42."
    assert reply.message.content == "The answer is 42."


def test_streamed_native_think_block_is_reasoning_not_content(thinker):
    async def collect():
        return [event async for event in thinker.stream(_ask())]

    events = asyncio.run(collect())
    reasoning = "".join(e.reasoning_content or "" for e in events)
    content = "".join(e.content or "" for e in events)
    assert reasoning == "Six times seven.\nThat is 42." and content == "The answer is 42."
    assert all("<think" not in (e.content or "") and "</think" not in (e.content or "") for e in events)


@pytest.mark.parametrize(("body", "enabled", "budget"), [
    ({"reasoning_effort": "none"}, False, None),
    ({"reasoning_effort": "low"}, True, 256),
    ({"reasoning_effort": "medium"}, True, 1024),
    ({"reasoning_effort": "high"}, True, 4096),
    ({"thinking": {"type": "enabled", "budget_tokens": 77}}, True, 77),
    ({"thinking": {"type": "disabled"}}, False, None),
])
def test_reasoning_effort_maps_to_a_budget(body, enabled, budget):
    request = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **body})
    thinking = request.to_kernel("m").thinking
    assert thinking.enabled is enabled and thinking.budget_tokens == budget
