"""Honest usage from remote models: a real loopback OpenAI-compatible server that omits ``usage``
is counted with the embedded model's tokenizer and flagged estimated — in the backend, in the API
response, and in the ledger row. The same server leaving tool-call markup in its text shows that
the backend turns it into calls and never streams it as content."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import LiveServer, make_home
from sovereign.finops.ledger import UsageLedger
from sovereign.governance.egress import EgressGate
from sovereign.kernel.messages import ChatRequest, Message, Timings, ToolSpec, Usage
from sovereign.kernel.openai_backend import OpenAICompatibleModel
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.kernel.token_estimate import VocabCounter, heuristic_count
from sovereign.store import Database

ANSWER = "The capital of France is Paris. It lies on the Seine."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = ToolSpec("get_weather", "Weather for a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


class _NoUsageHandler(BaseHTTPRequestHandler):
    """Answers chat completions like a server that never reports usage (some proxies, old vLLM)."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = CALL if body.get("tools") else ANSWER
        if "two cities" in body["messages"][-1]["content"]:  # a second call cut off by the token limit
            text = CALL + "\n" + CALL + "\n" + CALL.replace("Paris", "Rome") + "\n" + CALL.replace("Paris", "Oslo")[:40]
        if not body.get("stream"):
            payload = {"id": "x", "object": "chat.completion", "model": body["model"],
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]}
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        pieces = [text[i:i + 5] for i in range(0, len(text), 5)]
        for piece in pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture(scope="module")
def no_usage_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoUsageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def vocab(models_dir) -> VocabCounter:
    return VocabCounter(models_dir / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


def remote(base_url: str, counter=None) -> OpenAICompatibleModel:
    spec = ModelSpec(name="peer", backend="openai", base_url=base_url, remote_name="peer-model")
    return OpenAICompatibleModel(spec, EgressGate(mode="offline"), token_counter=counter)


QUESTION = "What is the capital of France? Answer in two sentences, please."


def ask(**options) -> ChatRequest:
    return ChatRequest(model="peer", messages=[Message(role="user", content=QUESTION)], **options)


def test_complete_without_usage_is_counted_with_the_local_tokenizer(no_usage_server, vocab):
    reply = asyncio.run(remote(no_usage_server, vocab).complete(ask()))
    assert reply.message.content == ANSWER
    usage = reply.usage
    assert usage.estimated and usage.requests == 1
    assert vocab.exact
    assert usage.completion_tokens == vocab(ANSWER)
    assert vocab(QUESTION) < usage.prompt_tokens <= vocab(QUESTION) + 10


def test_stream_without_usage_is_counted_and_flagged(no_usage_server, vocab):
    async def collect():
        return [event async for event in remote(no_usage_server, vocab).stream(ask())]

    events = asyncio.run(collect())
    assert "".join(e.content or "" for e in events) == ANSWER
    usage = events[-1].usage
    assert usage.estimated and usage.completion_tokens == vocab(ANSWER)  # tokens, not chunks
    assert usage.prompt_tokens > vocab(QUESTION)


def test_without_a_tokenizer_the_heuristic_still_counts(no_usage_server, tmp_path):
    counter = VocabCounter(tmp_path / "absent.gguf")
    reply = asyncio.run(remote(no_usage_server, counter).complete(ask()))
    assert not counter.exact
    assert reply.usage.estimated and reply.usage.completion_tokens == heuristic_count(ANSWER) > 0


def test_markup_left_in_a_remote_stream_becomes_a_call_never_content(no_usage_server, vocab):
    async def collect():
        return [event async for event in remote(no_usage_server, vocab).stream(ask(tools=[WEATHER]))]

    events = asyncio.run(collect())
    assert "".join(e.content or "" for e in events) == ""
    calls = [c for e in events for c in e.tool_calls]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert events[-1].finish_reason == "tool_calls"
    reply = asyncio.run(remote(no_usage_server, vocab).complete(ask(tools=[WEATHER])))
    assert reply.message.content is None and reply.message.tool_calls[0].name == "get_weather"


def test_complete_calls_before_a_cut_off_one_are_kept_and_repeats_collapse(no_usage_server, vocab):
    request = ChatRequest(model="peer", messages=[Message(role="user", content="Weather in two cities?")],
                          tools=[WEATHER])
    reply = asyncio.run(remote(no_usage_server, vocab).complete(request))

    async def collect():
        return [event async for event in remote(no_usage_server, vocab).stream(request)]

    events = asyncio.run(collect())
    streamed = [c for e in events for c in e.tool_calls]
    for calls, content, finish in ((reply.message.tool_calls, reply.message.content, reply.finish_reason),
                                   (streamed, "".join(e.content or "" for e in events) or None, events[-1].finish_reason)):
        assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
        assert content is None and finish == "tool_calls"


def test_ledger_row_carries_the_estimated_flag(tmp_path):
    db = Database(tmp_path / "ledger.db")
    ledger = UsageLedger(db)
    ledger.record(model="peer", usage=Usage(prompt_tokens=10, completion_tokens=5, requests=1, estimated=True),
                  timings=Timings(), prices=PriceSheet())
    ledger.record(model="peer", usage=Usage(prompt_tokens=10, completion_tokens=5, requests=1),
                  timings=Timings(), prices=PriceSheet())
    assert [row["estimated"] for row in ledger.recent()] == [0, 1]


def test_ledger_migration_keeps_old_rows(tmp_path):
    from sovereign.finops.ledger import MIGRATIONS

    db = Database(tmp_path / "old.db")
    db.migrate("ledger", MIGRATIONS[:1])  # a database from before the column existed
    with db.transaction() as conn:
        conn.execute("INSERT INTO usage_ledger (model, prompt_tokens, cached_tokens, uncached_tokens, completion_tokens, "
                     "reasoning_tokens, latency_ms, ttft_ms, cost_usd) VALUES ('m', 1, 0, 1, 1, 0, 1, 1, 0)")
    ledger = UsageLedger(db)
    assert [(row["model"], row["estimated"]) for row in ledger.recent()] == [("m", 0)]


@pytest.mark.integration
def test_served_remote_without_usage_is_estimated_in_api_and_ledger(no_usage_server, tmp_path, models_dir):
    import openai

    extra = (f'\n[[models]]\nname = "peer"\nbackend = "openai"\nbase_url = "{no_usage_server}"\n'
             'remote_name = "peer-model"\njurisdiction = "local"\n')
    home = make_home(tmp_path / "home", models_dir, extra)
    server = LiveServer(home, "sk-usage-test-key-0123456789").start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        reply = client.chat.completions.create(model="peer", messages=[{"role": "user", "content": QUESTION}])
        assert reply.choices[0].message.content == ANSWER
        assert reply.usage.completion_tokens > 0 and reply.usage.model_extra.get("estimated") is True
    finally:
        server.stop()
    rows = sqlite3.connect(Path(home) / "sovereign.db").execute(
        "SELECT model, completion_tokens, estimated FROM usage_ledger").fetchall()
    assert rows == [("peer", reply.usage.completion_tokens, 1)]
