"""Fake scrape targets for the metrics suite: Prometheus text with counts the test chose,
served by a real HTTP server that the aggregator finds through discovery. The text is
written here by hand (the format apex.metrics exposes), not generated with apex code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from apex.client import ApexClient
from suites.platform import eventually
from suites.tier3.fakes import FakeState, record, register

LE = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5")
BOUNDS = (*LE, "5.0", "+Inf")  # every service's latency buckets
U = 10**12  # fake counts dwarf the platform's own traffic, which is merged in
# cumulative counts: p50 in the first bucket, p95 inside (0.5, 1.0], p99 past 5.0
HISTOGRAM = (1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.5, 2.7, 2.91, 2.93, 2.95, 3.0)
# p50 = 0.001 * 1.5 / 1.7; p95 = 0.5 + 0.5 * (2.85 - 2.7) / (2.91 - 2.7); p99 = 5.0
PERCENTILES = {"p50": 0.000882, "p95": 0.857143, "p99": 5.0}
SCRAPE_TIMEOUT = 1.0  # how long the aggregator waits for a target


@dataclass
class Target:
    """What one fake target exposes: its start time, request counters, a latency histogram."""

    service: str
    start: float | None = 1000.0
    requests: dict[str, float] = field(default_factory=dict)  # route -> count
    swapped: set[str] = field(default_factory=set)  # routes whose labels come in another order
    histogram: bool = False
    extra: dict[str, float] = field(default_factory=dict)  # other counter families

    def text(self) -> str:
        lines = ["# TYPE apex_http_requests_total counter"]
        for route, count in self.requests.items():
            labels = [f'service="{self.service}"', f'route="{route}"', 'method="GET"']
            labels.append('status="200"')
            ordered = reversed(labels) if route in self.swapped else labels
            lines.append(f"apex_http_requests_total{{{','.join(ordered)}}} {count}")
        if self.histogram:
            lines += self._histogram()
        for name, value in self.extra.items():
            lines += [f"# TYPE {name}_total counter", f"{name}_total {value}"]
        if self.start is not None:
            lines.append("# TYPE apex_process_start_time_seconds gauge")
            lines.append(
                f'apex_process_start_time_seconds{{service="{self.service}"}} {self.start}'
            )
        return "\n".join(lines) + "\n"

    def _histogram(self) -> list[str]:
        name, labels = "apex_http_request_duration_seconds", f'service="{self.service}"'
        lines = [f"# TYPE {name} histogram"]
        for le, share in zip(BOUNDS, HISTOGRAM, strict=True):
            lines.append(f'{name}_bucket{{{labels},route="/fake",le="{le}"}} {share * U}')
        lines.append(f'{name}_count{{{labels},route="/fake"}} {HISTOGRAM[-1] * U}')
        lines.append(f'{name}_sum{{{labels},route="/fake"}} {0.5 * U}')
        return lines


def serve(state: FakeState, path: str, target: Target, status: int = 200) -> None:
    """Answer `{path}/metrics` with the target's current text."""
    state.replies[f"{path}/metrics"] = (status, "text/plain", target.text().encode())


async def summary(api: ApexClient) -> dict[str, Any]:
    url = f"{api.ep.backend}/internal/metrics/summary"
    return dict(await api.call("GET", url, headers=await api.service_headers()))


@asynccontextmanager
async def targets(
    client: aioredis.Redis, state: FakeState, entries: list[tuple[str, str, str]]
) -> AsyncIterator[None]:
    """Register fake targets [(service, url, status)] in discovery for the block; then
    deregister them and remove their series from the aggregator's state, so that their
    huge counts do not stay in every later summary."""
    keys = [await register(client, record(n, f"{n}-0", u, s)) for n, u, s in entries]
    try:
        yield
    finally:
        await client.delete(*keys)
        await _forget_series(client, state, [u for _, u, _ in entries])


async def _forget_series(client: aioredis.Redis, state: FakeState, urls: list[str]) -> None:
    async def idle() -> bool:  # no scrape of a fake under way that could write it back
        waiting = [at for at in state.hung() if time.time() - at < SCRAPE_TIMEOUT + 0.1]
        return state.in_flight == 0 and not waiting

    for _ in range(2):  # a scrape that read the state before the first pass writes it back
        await eventually(idle, 3, interval=0.01)
        fields: list[Any] = await client.hkeys("metrics:agg")
        mine = [f for f in fields if any(str(f).startswith(f"{u}|") for u in urls)]
        if mine:
            await client.hdel("metrics:agg", *mine)
        await asyncio.sleep(0.15)
