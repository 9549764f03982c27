"""Prometheus metrics, one registry per app (so several apps can live in one process).

Per call (observed where a call is settled): requests, tokens, cost, latency, time to first token
and time per output token, by model. Read at each scrape from the running OS: model readiness
and queue depth, spend today (per owner and in all), and what remains of every spend cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sovereign.governance.governor import CallRecord
from sovereign.kernel.messages import Timings, Usage

if TYPE_CHECKING:
    from sovereign.services import Services

_LATENCY_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class Metrics:
    def __init__(self, services: Services | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sovereign_requests_total", "Chat completion requests", ["model", "status"], registry=self.registry
        )
        self.tokens = Counter(
            "sovereign_tokens_total", "Tokens processed", ["model", "kind"], registry=self.registry
        )
        self.latency = Histogram(
            "sovereign_request_seconds", "Request latency", ["model"], registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.ttft = Histogram(
            "sovereign_time_to_first_token_seconds", "Time to first token", ["model"], registry=self.registry,
            buckets=_TTFT_BUCKETS,
        )
        self.per_token = Histogram(
            "sovereign_time_per_output_token_seconds", "Decode time per output token after the first",
            ["model"], registry=self.registry, buckets=_TOKEN_BUCKETS,
        )
        self.in_flight = Gauge("sovereign_requests_in_flight", "Requests being served", registry=self.registry)
        self.model_ready = Gauge("sovereign_model_ready", "1 when the model is loaded", ["model"], registry=self.registry)
        self.cost = Counter("sovereign_cost_usd_total", "Spend in USD", ["model"], registry=self.registry)
        if services is not None:
            self.registry.register(_LiveState(services))

    def observe(self, model: str, usage: Usage, timings: Timings, cost: float) -> None:
        self.requests.labels(model, "ok").inc()
        self.tokens.labels(model, "prompt_cached").inc(usage.cached_tokens)
        self.tokens.labels(model, "prompt_uncached").inc(usage.uncached_tokens)
        self.tokens.labels(model, "completion").inc(usage.completion_tokens)
        self.tokens.labels(model, "reasoning").inc(usage.reasoning_tokens)
        self.latency.labels(model).observe(timings.latency_ms / 1000)
        if timings.ttft_ms > 0:  # a backend that cannot tell reports 0: not a measurement
            self.ttft.labels(model).observe(timings.ttft_ms / 1000)
            decoded = usage.completion_tokens - 1
            if decoded > 0 and timings.latency_ms > timings.ttft_ms:
                self.per_token.labels(model).observe((timings.latency_ms - timings.ttft_ms) / 1000 / decoded)
        self.cost.labels(model).inc(cost)

    def observe_call(self, record: CallRecord) -> None:
        """A ``Governor`` observer: every settled model call (chat, runs, any interface)."""
        self.observe(record.model, record.usage, record.timings, record.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Gauges read from the running OS at each scrape (nothing stale between scrapes)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("sovereign_queue_depth", "Requests waiting for a model", labels=["model"])
        for name, model in list(self.services.models.items()):
            waiting = getattr(model, "queue_depth", None)
            if waiting is not None:
                depth.add_metric([name], float(waiting))
        yield depth
        yield from self._spend()

    def _spend(self) -> Iterator[Metric]:
        spend = self.services.spend
        today = GaugeMetricFamily("sovereign_spend_today_usd", "Settled spend today (UTC) in USD, by owner",
                                  labels=["owner"])
        today_tokens = GaugeMetricFamily("sovereign_spend_today_tokens", "Tokens settled today (UTC), by owner",
                                         labels=["owner"])
        for owner, (usd, tokens) in spend.spent_today("owner").items():
            today.add_metric([owner], usd)
            today_tokens.add_metric([owner], tokens)
        yield today
        yield today_tokens
        usd, _tokens = spend.spent_today("global").get("*", (0.0, 0))
        yield GaugeMetricFamily("sovereign_spend_today_global_usd", "Settled spend today (UTC) in USD, in all",
                                value=usd)
        labels = ["scope", "subject", "period"]
        remaining_usd = GaugeMetricFamily("sovereign_cap_remaining_usd",
                                          "What a spend cap still allows in USD (spent and reserved deducted)",
                                          labels=labels)
        remaining_tokens = GaugeMetricFamily("sovereign_cap_remaining_tokens",
                                             "What a token cap still allows (spent and reserved deducted)",
                                             labels=labels)
        limit_usd = GaugeMetricFamily("sovereign_cap_limit_usd", "A spend cap's limit in USD", labels=labels)
        for status in spend.cap_statuses():
            key = [status.cap.scope, status.cap.subject, status.cap.period]
            if status.remaining_usd is not None:
                remaining_usd.add_metric(key, status.remaining_usd)
                limit_usd.add_metric(key, float(status.cap.max_usd or 0.0))
            if status.remaining_tokens is not None:
                remaining_tokens.add_metric(key, status.remaining_tokens)
        yield remaining_usd
        yield remaining_tokens
        yield limit_usd
