"""Prometheus metrics for every service (prometheus-client): requests, latency, start time."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One registry per service process (not the global one), exposed at `/metrics`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apex_http_requests",
            "HTTP requests served",
            ["service", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "apex_http_request_duration_seconds",
            "HTTP request latency",
            ["service", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        started = Gauge(
            "apex_process_start_time_seconds",
            "when this process started",
            ["service"],
            registry=self.registry,
        )
        started.labels(service).set(time.time())

    async def exposition(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.exposition)]

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(self.service, route, method, str(status)).inc()
        self.latency.labels(self.service, route).observe(seconds)


class MetricsMiddleware:
    """ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, scope["method"], status[0], time.perf_counter() - started)
