"""Prometheus metrics of the server and its engines, on one registry per app."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from autan.engine.engine import Engine
from autan.http import routes

log = logging.getLogger("autan.server")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, engines: Callable[[], dict[str, Engine]]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "autan_requests", "HTTP requests answered, by route template", ["endpoint", "status"], registry=r
        )
        self.prompt_tokens = Counter("autan_prompt_tokens", "Prompt tokens received", ["model"], registry=r)
        self.cached_tokens = Counter(
            "autan_prompt_tokens_cached", "Prompt tokens served from the prefix cache", ["model"], registry=r
        )
        self.generated_tokens = Counter("autan_generation_tokens", "Tokens generated", ["model"], registry=r)
        self.first_token = Histogram(
            "autan_time_to_first_token_seconds",
            "Arrival to first token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            "autan_inter_token_latency_seconds",
            "Mean gap between a request's tokens",
            ["model"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.duration = Histogram(
            "autan_request_duration_seconds", "Arrival to last token", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.guard_decisions = Counter(
            "autan_guard_decisions",
            "Rail decisions, by rail, category found ('none' when nothing) and action (pass, log, block)",
            ["rail", "category", "action"],
            registry=r,
        )
        self.guard_seconds = Histogram(
            "autan_guard_seconds", "Time a rail's moderation took", ["rail"], buckets=LATENCY_BUCKETS, registry=r
        )
        r.register(_EngineCollector(engines))


class _EngineCollector:
    def __init__(self, engines: Callable[[], dict[str, Engine]]):
        self.engines = engines

    def collect(self) -> Iterable[Metric]:
        gauges = {
            "running": GaugeMetricFamily("autan_requests_running", "Requests in the running batch", labels=["model"]),
            "waiting": GaugeMetricFamily("autan_requests_waiting", "Requests queued", labels=["model"]),
            "kv_blocks_used": GaugeMetricFamily("autan_kv_blocks_used", "KV cache blocks in use", labels=["model"]),
            "kv_blocks_free": GaugeMetricFamily("autan_kv_blocks_free", "KV cache blocks free", labels=["model"]),
            "prefix_cache_hit_rate": GaugeMetricFamily(
                "autan_prefix_cache_hit_rate", "Share of prompt tokens served from the prefix cache", labels=["model"]
            ),
            "generation_tokens_per_second": GaugeMetricFamily(
                "autan_generation_tokens_per_second", "Tokens generated per second, last seconds", labels=["model"]
            ),
        }
        preemptions = CounterMetricFamily("autan_preemptions", "Requests preempted for KV memory", labels=["model"])
        finished = CounterMetricFamily(
            "autan_requests_finished", "Requests the engine ended, by finish reason", labels=["model", "reason"]
        )
        for name, engine in self.engines().items():
            stats = engine.stats()
            for field, family in gauges.items():
                family.add_metric([name], float(getattr(stats, field)))
            preemptions.add_metric([name], stats.preemptions)
            for reason, count in stats.finished.items():
                finished.add_metric([name, reason], count)
        yield from gauges.values()
        yield preemptions
        yield finished


class CountAndLog:
    """Count every request by its route's template and status, and log it once it is answered.

    Labelled by template (`/api/conversations/{conversation_id}`), never by the raw path: a
    client's random URLs must not make new time series. Paths no route matches count as
    "unmatched"; the chat app's files as "/". Plain ASGI rather than `@app.middleware`:
    Starlette's BaseHTTPMiddleware relays a streamed body through an extra task and queue per
    chunk, a cost paid on every token of every stream.
    """

    def __init__(self, app: Callable, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            found = routes.match(scope["app"], scope["path"]) if scope.get("route") is not None else None
            # no route: the chat app's files (served at /), or nothing at all
            endpoint = found[0] if found is not None else "/" if status < 400 else "unmatched"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            log.info("%s %s %d %.3fs", scope["method"], endpoint, status, time.perf_counter() - start)
