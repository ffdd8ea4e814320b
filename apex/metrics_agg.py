"""The metrics aggregator: scrapes every discovered service's `/metrics` and produces totals,
rates and latency percentiles across services.

Counters restart from zero when a service restarts; the aggregate must not. Each series is
tracked per scrape target (its URL, which the launcher keeps across restarts) with the last
value seen and an offset in Redis: when the target's start time changes or a counter goes
down, the last value is added to the offset, so totals survive restarts of the services and
of the aggregator itself.
"""

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from typing import Any

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from apex.discovery import resolve

STATE = "metrics:agg"
START = "apex_process_start_time_seconds"
LATENCY = "apex_http_request_duration_seconds"
Sample = tuple[str, str, float]  # (series key, service, value)


def parse(text: str) -> tuple[float, list[tuple[str, dict[str, str], float]]]:
    """(process start time, cumulative samples) from a Prometheus text exposition."""
    started, samples = 0.0, []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == START:
                started = s.value
            elif family.type in ("counter", "histogram") and not s.name.endswith("_created"):
                samples.append((s.name, dict(s.labels), float(s.value)))
    return started, samples


def merge(
    state: dict[str, Any],
    target: str,
    started: float,
    samples: list[tuple[str, dict[str, str], float]],
) -> dict[str, Any]:
    """Fold one scrape into `state` (last value and offset per series); pure."""
    out: dict[str, Any] = {f"{target}|start": started}
    if state.get(f"{target}|start") not in (None, started):  # the target restarted
        for key, (last, offset) in _series(state, target):
            out[key] = (0.0, offset + last)
    for name, labels, value in samples:
        key = f"{target}|{name}|{json.dumps(labels, sort_keys=True)}"
        last, offset = out.get(key, state.get(key, (0.0, 0.0)))
        out[key] = (value, offset + (last if value < last else 0.0))
    return out


def _series(state: dict[str, Any], target: str) -> list[tuple[str, tuple[float, float]]]:
    return [
        (k, (float(v[0]), float(v[1])))
        for k, v in state.items()
        if k.startswith(f"{target}|") and not k.endswith("|start")
    ]


def totals(state: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(metric name, labels json) -> value summed over targets, offsets included."""
    summed: dict[tuple[str, str], float] = defaultdict(float)
    for key, pair in state.items():
        if not key.endswith("|start"):
            _, name, labels = key.split("|", 2)
            summed[(name, labels)] += pair[0] + pair[1]
    return dict(summed)


def percentile(buckets: list[tuple[float, float]], q: float) -> float:
    """Linear interpolation inside cumulative histogram buckets [(upper bound, count)]."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return 0.0
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            share = (rank - prev_count) / (count - prev_count)  # prev_count < rank <= count
            return prev_bound + share * (bound - prev_bound)
        prev_bound, prev_count = bound, count
    return prev_bound


class Aggregator:
    def __init__(self, client: aioredis.Redis, http: httpx.AsyncClient) -> None:
        self.redis, self.http = client, http
        self.previous: tuple[float, dict[tuple[str, str], float]] | None = None
        self.failed: list[str] = []  # the targets the last scrape could not use

    async def scrape(self) -> dict[str, Any]:
        """One round over every discovered target; a target that does not answer, answers
        with an error or with something that is not Prometheus text is skipped (and named
        in `failed`), never the end of the round."""
        raw: Any = await self.redis.hgetall(STATE)
        state: dict[str, Any] = {str(k): json.loads(v) for k, v in raw.items()}
        failed = set()
        for record in await resolve(self.redis, healthy_only=False):
            try:
                resp = await self.http.get(f"{record['url']}/metrics", timeout=1.0)
                resp.raise_for_status()
                state.update(merge(state, record["url"], *parse(resp.text)))
            except (httpx.HTTPError, ValueError):
                failed.add(record["url"])
        self.failed = sorted(failed)
        if state:
            await self.redis.hset(STATE, mapping={k: json.dumps(v) for k, v in state.items()})
        return state

    async def summary(self) -> dict[str, Any]:
        now, current = time.monotonic(), totals(await self.scrape())
        requests = {k: v for k, v in current.items() if k[0] == "apex_http_requests_total"}
        rate = self._rate(now, requests)
        self.previous = (now, requests)
        return {
            "requests_total": sum(requests.values()),
            "requests_by_service": _by(requests),
            "requests_by_route": _by(requests, "route"),
            "requests_per_s": rate,
            "latency_s": _latency(current),
            "unhealthy_targets": self.failed,
        }

    def _rate(self, now: float, requests: dict[tuple[str, str], float]) -> float | None:
        if self.previous is None or now <= self.previous[0]:
            return None
        delta = sum(requests.values()) - sum(self.previous[1].values())
        return round(delta / (now - self.previous[0]), 3)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.scrape()
            await asyncio.sleep(interval)


def _by(series: dict[tuple[str, str], float], label: str = "service") -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (_, labels), value in series.items():
        out[json.loads(labels).get(label, "")] += value
    return dict(out)


def _latency(current: dict[tuple[str, str], float]) -> dict[str, float]:
    merged: dict[float, float] = defaultdict(float)
    for (name, labels), value in current.items():
        if name == f"{LATENCY}_bucket":
            merged[float(json.loads(labels)["le"])] += value
    buckets = list(merged.items())
    return {f"p{int(q * 100)}": round(percentile(buckets, q), 6) for q in (0.5, 0.95, 0.99)}
