"""Prometheus metrics scraped from ``/metrics`` after real HTTP chats: time-to-first-token and
per-output-token histograms by model, queue depth, spend today (per owner and in all) and what
remains of each cap. Models are the deterministic doubles of sovereign.testing."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sovereign.config import load_settings
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, Timings, Usage
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.server.app import create_app
from sovereign.server.bootstrap import bootstrap_admin_key
from sovereign.services import Services
from sovereign.testing import FunctionModel

PRICES = PriceSheet(cached_input=1.0, input=10.0, output=20.0)


def timed(request: ChatRequest) -> ChatResponse:
    """11 output tokens; the first after 20 ms, the other 10 over 100 ms (10 ms each)."""
    return ChatResponse(model="timed", message=Message(role="assistant", content="a b c d e f g h i j k"),
                        usage=Usage(prompt_tokens=5, completion_tokens=11, requests=1),
                        timings=Timings(ttft_ms=20.0, latency_ms=120.0))


class Queued(FunctionModel):
    """A model with a real wait queue: calls wait their turn behind ``gate``; ``queue_depth``
    counts them, as the embedded backend's does."""

    def __init__(self) -> None:
        super().__init__(function=timed, name="queued")
        self.gate = threading.Event()
        self.waiting = 0

    @property
    def queue_depth(self) -> int:
        return self.waiting

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.waiting += 1
        try:
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.waiting -= 1
        return await super().complete(request)


@pytest.fixture
def served(tmp_path):
    services = Services.open(load_settings(tmp_path / "home"))
    admin_key = bootstrap_admin_key(services)
    services.register(ModelSpec(name="timed", backend="in_process", prices=PRICES), FunctionModel(timed, name="timed"))
    queued = Queued()
    services.register(ModelSpec(name="queued", backend="in_process", prices=PRICES), queued)
    with TestClient(create_app(services, preload=False)) as client:
        yield services, client, {"Authorization": f"Bearer {admin_key}"}, queued
    services.close()


def scrape(client, headers) -> dict[tuple[str, tuple], float]:
    reply = client.get("/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def chat(client, headers, model="timed", stream=False):
    reply = client.post("/v1/chat/completions", headers=headers, json={
        "model": model, "stream": stream, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    return reply


def test_latency_histograms_after_chats(served):
    services, client, headers, _ = served
    chat(client, headers)
    chat(client, headers, stream=True)
    m = scrape(client, headers)
    label = (("model", "timed"),)
    assert m[("sovereign_time_to_first_token_seconds_count", label)] == 2
    assert m[("sovereign_time_to_first_token_seconds_sum", label)] == pytest.approx(0.040)
    assert m[("sovereign_time_per_output_token_seconds_count", label)] == 2
    assert m[("sovereign_time_per_output_token_seconds_sum", label)] == pytest.approx(0.020)
    assert m[("sovereign_time_per_output_token_seconds_bucket", (("le", "0.025"),) + label)] == 2
    assert m[("sovereign_time_per_output_token_seconds_bucket", (("le", "0.005"),) + label)] == 0


def test_spend_and_remaining_budget_gauges(served):
    services, client, headers, _ = served
    admin = services.keys.identity("local-admin")["id"]
    services.spend.set_cap("global", None, "day", max_usd=1.0, max_tokens=1000)
    services.spend.set_cap("owner", admin, "total", max_usd=0.5)
    before = scrape(client, headers)
    assert before[("sovereign_spend_today_global_usd", ())] == 0.0
    assert before[("sovereign_cap_remaining_usd", (("period", "day"), ("scope", "global"), ("subject", "*")))] == 1.0

    chat(client, headers)
    chat(client, headers)
    cost = 2 * (5 * 10.0 + 11 * 20.0) / 1_000_000
    m = scrape(client, headers)
    assert m[("sovereign_spend_today_usd", (("owner", admin),))] == pytest.approx(cost)
    assert m[("sovereign_spend_today_tokens", (("owner", admin),))] == 32
    assert m[("sovereign_spend_today_global_usd", ())] == pytest.approx(cost)
    day = (("period", "day"), ("scope", "global"), ("subject", "*"))
    assert m[("sovereign_cap_remaining_usd", day)] == pytest.approx(1.0 - cost)
    assert m[("sovereign_cap_remaining_tokens", day)] == 1000 - 32
    assert m[("sovereign_cap_limit_usd", day)] == 1.0
    owner = (("period", "total"), ("scope", "owner"), ("subject", admin))
    assert m[("sovereign_cap_remaining_usd", owner)] == pytest.approx(0.5 - cost)

    services.spend.set_cap("owner", admin, "total")  # removed: its gauge goes with it
    assert ("sovereign_cap_remaining_usd", owner) not in scrape(client, headers)


def test_key_spend_limit_is_a_cap_gauge(served):
    from sovereign.governance.keys import Scopes

    services, client, headers, _ = served
    key_id, _secret = services.keys.create_key("local-admin", scopes=Scopes(max_spend_usd=2.0))
    m = scrape(client, headers)
    assert m[("sovereign_cap_remaining_usd", (("period", "total"), ("scope", "key"), ("subject", key_id)))] == 2.0


def test_queue_depth_gauge(served):
    services, client, headers, queued = served
    label = (("model", "queued"),)
    assert scrape(client, headers)[("sovereign_queue_depth", label)] == 0
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(chat, client, headers, "queued") for _ in range(2)]
        deadline = time.monotonic() + 20
        while queued.waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scrape(client, headers)[("sovereign_queue_depth", label)] == 2
        queued.gate.set()
        for job in pending:
            job.result(timeout=20)
    assert scrape(client, headers)[("sovereign_queue_depth", label)] == 0


@pytest.mark.integration
def test_real_model_metrics(live_server):
    import httpx

    headers = {"Authorization": f"Bearer {live_server.api_key}"}
    base = f"http://127.0.0.1:{live_server.port}"
    with httpx.stream("POST", f"{base}/v1/chat/completions", headers=headers, timeout=120, json={
            "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 16, "stream": True}) as reply:
        assert reply.status_code == 200
        "".join(reply.iter_text())
    text = httpx.get(f"{base}/metrics", headers=headers, timeout=30).text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    seen = {k: v for k, v in samples.items() if "token" in k or "queue" in k}
    assert samples["sovereign_time_to_first_token_seconds_count"] >= 1, seen
    assert samples["sovereign_time_per_output_token_seconds_count"] >= 1, seen
    # Decode time per token is a share of the call's latency, whatever the load on the box.
    assert 0 < samples["sovereign_time_per_output_token_seconds_sum"] < samples["sovereign_request_seconds_sum"], seen
    assert samples["sovereign_queue_depth"] == 0, seen
