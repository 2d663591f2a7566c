"""Prometheus metrics of the scoring service, on a registry of its own.

Each app instance gets its own :class:`ServiceMetrics`, so several apps in one
process (tests) never share or double-register collectors.

With ``zhenping serve --workers N`` the processes share one folder of metric
files (the Prometheus client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``,
set and emptied by ``serve`` at start): whichever worker answers ``/metrics``
sums every worker's counters and histograms, so a counter never goes backwards
between scrapes. Gauges: the queue depth is summed over live workers, readiness
is the lowest over live workers (1 only when every worker is ready).
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = (64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class ServiceMetrics:
    """The service's collectors.

    Attributes:
        registry: the registry ``/metrics`` renders.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "zhenping_http_requests_total", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "zhenping_http_request_duration_seconds",
            "Time from request start to the end of the response.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.comments = Counter("zhenping_comments_scored_total", "Comments answered with scores.", registry=r)
        self.batch_size = Histogram(
            "zhenping_batch_size_texts", "Distinct texts per model call.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "zhenping_batch_tokens",
            "Tokens per model call (estimated: characters + 2 per text, capped at max_length).",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("zhenping_queue_depth_texts", "Texts waiting for the model.", registry=r,
                                 multiprocess_mode="livesum")
        self.cache_hits = Counter("zhenping_cache_hits_total", "Texts answered from the score cache.", registry=r)
        self.cache_misses = Counter("zhenping_cache_misses_total", "Texts that needed the model.", registry=r)
        self.inference = Histogram(
            "zhenping_model_inference_seconds",
            "Wall time of one batched scorer call.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "zhenping_queue_rejected_texts_total", "Texts refused because the queue was full.", registry=r
        )
        self.ready = Gauge("zhenping_ready", "1 when the model is loaded and the service accepts work.", registry=r,
                           multiprocess_mode="livemin")

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type (every worker's, summed, under ``--workers N``)."""
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """At a worker's exit: drop its live gauges from the shared files (its counters stay counted)."""
        if multiprocess_dir() is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), multiprocess_dir())


def multiprocess_dir() -> str | None:
    """The shared metrics folder of ``serve --workers N``, or ``None`` in a single process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class MetricsMiddleware:
    """Count requests and time them by route template, method and status.

    Paths that match no route are counted as ``route="unmatched"`` so that
    scanners probing random URLs cannot grow the label set.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, known_paths: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            route = path if path in self.known_paths else ("/static" if path.startswith("/static/") else "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)
