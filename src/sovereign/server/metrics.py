"""Prometheus metrics, one registry per app (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sovereign.governance.governor import CallRecord
from sovereign.kernel.messages import Timings, Usage


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sovereign_requests_total", "Chat completion requests", ["model", "status"], registry=self.registry
        )
        self.tokens = Counter(
            "sovereign_tokens_total", "Tokens processed", ["model", "kind"], registry=self.registry
        )
        self.latency = Histogram(
            "sovereign_request_seconds", "Request latency", ["model"], registry=self.registry,
            buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.ttft = Histogram(
            "sovereign_time_to_first_token_seconds", "Time to first token", ["model"], registry=self.registry,
            buckets=(0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.in_flight = Gauge("sovereign_requests_in_flight", "Requests being served", registry=self.registry)
        self.model_ready = Gauge("sovereign_model_ready", "1 when the model is loaded", ["model"], registry=self.registry)
        self.cost = Counter("sovereign_cost_usd_total", "Spend in USD", ["model"], registry=self.registry)

    def observe(self, model: str, usage: Usage, timings: Timings, cost: float) -> None:
        self.requests.labels(model, "ok").inc()
        self.tokens.labels(model, "prompt_cached").inc(usage.cached_tokens)
        self.tokens.labels(model, "prompt_uncached").inc(usage.uncached_tokens)
        self.tokens.labels(model, "completion").inc(usage.completion_tokens)
        self.tokens.labels(model, "reasoning").inc(usage.reasoning_tokens)
        self.latency.labels(model).observe(timings.latency_ms / 1000)
        self.ttft.labels(model).observe(timings.ttft_ms / 1000)
        self.cost.labels(model).inc(cost)

    def observe_call(self, record: CallRecord) -> None:
        """A ``Governor`` observer: every settled model call (chat, runs, any interface)."""
        self.observe(record.model, record.usage, record.timings, record.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)
