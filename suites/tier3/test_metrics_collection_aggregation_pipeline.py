"""Metrics collection and aggregation pipeline ($7K MRR): the numbers on-call relies on.

Every service exposes Prometheus text (prometheus-client): requests by route template,
method and status, latency in fixed buckets, its start time. The backend's aggregator
scrapes every target discovery knows (healthy or not) in the background and on demand,
and sums them: totals by service and route, the request rate, p50/p95/p99 latency; its
counters survive a target's restart; a target that fails or talks nonsense is skipped and
named, never the end of the summary.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from apex.client import ApexClient, ApexError, Endpoints
from apex.launcher import Stack
from suites.platform import eventually, service_urls
from suites.tier3.fakes import HANG, fake_server
from suites.tier3.metrics_support import BOUNDS, PERCENTILES, Target, serve, summary, targets

pytestmark = pytest.mark.anyio
LOGIN = "/auth/login"
FAKE_ROUTES = ("/fake/{item}", "/fake/gone", "/fake/x|y", "/fake/bulk")


@pytest.fixture
async def registry(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    if not endpoints.redis:
        pytest.skip("needs REDIS_URL to register scrape targets")
    client = aioredis.Redis.from_url(endpoints.redis, decode_responses=True)
    yield client
    await client.aclose()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    families = list(text_string_to_metric_families(text))
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def _count(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _exercise(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
    """Requests nobody else sends meanwhile (peers ask for /health: not counted here)."""
    for n in range(3):
        cache = await http.get(f"{url}/internal/cache/price:no-model-{n}", headers=headers)
        assert cache.status_code == 404
    assert (await http.get(f"{url}/no/such/page")).status_code == 404
    once = {**headers, "Connection": "close"}  # the server drops it after an exception
    broken = await http.post(f"{url}/internal/fault", content=b"[]", headers=once)
    assert broken.status_code == 500  # a handler that raises: counted as a 500


@pytest.mark.usefixtures("faults")
async def test_every_service_counts_requests_by_route_template_and_status(
    endpoints: Endpoints,
) -> None:
    async with ApexClient(endpoints) as api:
        headers = await api.service_headers()
        for name, url in service_urls(endpoints).items():
            before = _samples((await api.http.get(f"{url}/metrics")).text)
            await _exercise(api.http, url, headers)
            text = (await api.http.get(f"{url}/metrics")).text
            after = _samples(text)
            kinds = {f.name: f.type for f in text_string_to_metric_families(text)}
            assert kinds == {
                "apex_http_requests": "counter",
                "apex_http_requests_created": "gauge",
                "apex_http_request_duration_seconds": "histogram",
                "apex_http_request_duration_seconds_created": "gauge",
                "apex_process_start_time_seconds": "gauge",
            }
            _assert_counted(name, before, after)
            started = _count(after, "apex_process_start_time_seconds", service=name)
            assert time.time() - 3600 < started < time.time()


def _assert_counted(service: str, before: dict[Any, float], after: dict[Any, float]) -> None:
    def delta(route: str, method: str, status: str) -> float:
        labels = {"service": service, "route": route, "method": method, "status": status}
        total = "apex_http_requests_total"
        return _count(after, total, **labels) - _count(before, total, **labels)

    assert delta("/internal/cache/{key}", "GET", "404") == 3  # the template, not the path
    assert delta("unmatched", "GET", "404") == 1  # an unknown path is not a route of its own
    assert delta("/internal/fault", "POST", "500") == 1
    name, labels = "apex_http_request_duration_seconds_bucket", {"route": "/internal/cache/{key}"}
    bounds = [dict(ls)["le"] for n, ls in after if n == name and labels.items() <= ls]
    assert sorted(bounds) == sorted(BOUNDS)  # the same buckets everywhere: they merge
    fast = _count(after, name, service=service, le="0.5", **labels)
    assert fast - _count(before, name, service=service, le="0.5", **labels) == 3
    spent = "apex_http_request_duration_seconds_sum"
    took = _count(after, spent, service=service, **labels)
    assert 0 < took - _count(before, spent, service=service, **labels) < 1.5


async def _step(api: ApexClient, pause: float = 0.05) -> tuple[float, float, dict[str, Any]]:
    """A summary with the times its request left and its answer came (monotonic)."""
    await asyncio.sleep(pause)  # the targets change between two summaries, never during one
    sent = time.monotonic()
    found = await summary(api)
    return sent, time.monotonic(), found


def _first(a: Target, b: Target) -> None:
    """As built: a series at 0, a series with a "|" in a label value."""


def _grow(a: Target, b: Target) -> None:
    a.requests["/fake/{item}"] = 6
    a.swapped = {"/fake/gone"}  # the same series, its labels in another order
    b.requests["/fake/bulk"] = 2 * 10**6


def _restart(a: Target, b: Target) -> None:
    a.start, a.requests = 2000.0, {"/fake/{item}": 9}  # counting again, above its old 6
    b.requests["/fake/bulk"] = 3 * 10**6


def _drop(a: Target, b: Target) -> None:
    a.requests["/fake/{item}"] = 2  # fewer than before, the start time unchanged
    b.requests["/fake/bulk"] = 4 * 10**6


def _bulk(millions: int) -> Any:
    def change(a: Target, b: Target) -> None:
        b.requests["/fake/bulk"] = millions * 10**6

    return change


STEPS = (_first, _grow, _restart, _drop, _bulk(5), _bulk(6))
EXPECTED: list[dict[str, float]] = [  # by route after each step: nothing lost on the way
    dict(zip(FAKE_ROUTES, (item, 4.0, 3.0, bulk * 1e6), strict=True))
    for item, bulk in ((0, 1), (6, 2), (6 + 9, 3), (6 + 9 + 2, 4), (17, 5), (17, 6))
]


async def test_totals_rates_and_percentiles_of_known_targets(
    endpoints: Endpoints, registry: aioredis.Redis
) -> None:
    a = Target("fake-a", requests={"/fake/{item}": 0, "/fake/gone": 4, "/fake/x|y": 3})
    a.histogram, a.extra = True, {"aaa_jobs": 1, "zzz_jobs": 1}  # names around the others
    b = Target("fake-b", start=500.0, requests={"/fake/bulk": 10**6})
    with fake_server() as (base, state):
        entries = [("fake-a", f"{base}/a", "healthy"), ("fake-b", f"{base}/b", "unhealthy")]
        async with targets(registry, state, entries), ApexClient(endpoints) as api:
            steps = []
            for change in STEPS:
                change(a, b)
                serve(state, "/a", a)
                serve(state, "/b", b)
                steps.append(await _step(api))
    for (_, _, found), expected in zip(steps, EXPECTED, strict=True):
        _assert_summary(found, expected)
    _assert_rates(steps)


def _assert_summary(found: dict[str, Any], expected: dict[str, float]) -> None:
    by_route, by_service = found["requests_by_route"], found["requests_by_service"]
    assert {route: by_route.get(route) for route in FAKE_ROUTES} == expected
    fake_a = expected["/fake/{item}"] + expected["/fake/gone"] + expected["/fake/x|y"]
    assert (by_service["fake-a"], by_service["fake-b"]) == (fake_a, expected["/fake/bulk"])
    assert set(by_service) >= {"auth", "backend", "gateway", "idp"}
    assert sum(by_service.values()) == found["requests_total"]
    assert (found["latency_s"], found["unhealthy_targets"]) == (PERCENTILES, [])


def _assert_rates(steps: list[tuple[float, float, dict[str, Any]]]) -> None:
    """Between two summaries the fakes add a known number of requests (the platform's own
    traffic adds a few): the rate is that over the time between the two."""
    rates = []
    for (sent0, got0, s0), (sent1, got1, s1) in itertools.pairwise(steps):
        added = s1["requests_by_service"]["fake-a"] + s1["requests_by_service"]["fake-b"]
        added -= s0["requests_by_service"]["fake-a"] + s0["requests_by_service"]["fake-b"]
        rate = s1["requests_per_s"]
        assert added / (got1 - sent0) <= rate <= (added + 500) / (sent1 - got0), (added, rate)
        rates.append(rate)
    assert all(round(r, 3) == r for r in rates) and any(round(r, 2) != r for r in rates)


async def test_a_failing_target_is_skipped_and_named(
    endpoints: Endpoints, registry: aioredis.Redis
) -> None:
    good, down = Target("fake-good", requests={"/fake/good": 2}), Target("fake-down")
    down.requests = {"/fake/down": 5}
    with fake_server() as (base, state):
        serve(state, "/good", good)
        serve(state, "/down", down, status=503)  # well-formed, but not an answer to count
        state.replies["/garbage/metrics"] = (200, "text/plain", b"<html>not metrics</html>")
        state.replies["/hung/metrics"] = HANG
        names = ("good", "down", "garbage", "hung")
        entries = [(f"fake-{n}", f"{base}/{n}", "healthy") for n in names]
        async with targets(registry, state, entries), ApexClient(endpoints) as api:
            started = time.monotonic()
            found = await summary(api)
            took = time.monotonic() - started
    assert found["requests_by_service"]["fake-good"] == 2
    assert "fake-down" not in found["requests_by_service"]
    assert found["unhealthy_targets"] == sorted(f"{base}/{n}" for n in names[1:])
    assert 0.95 <= took < 1.8  # the hung one was given up after a second


async def _logins(api: ApexClient, email: str, count: int) -> None:
    for _ in range(count):
        await api.login(email, "correct horse battery")


async def test_counters_survive_a_service_restart(
    local_stack: Stack, registry: aioredis.Redis
) -> None:
    with fake_server() as (base, state):
        for name in PROBES:  # they sort first and last: a round scrapes them first and last
            serve(state, f"/{name}", Target(name))
        probes = [(name, f"{base}/{name}", "healthy") for name in PROBES]
        async with targets(registry, state, probes), ApexClient(local_stack.endpoints()) as api:
            email, _ = await api.new_user("restart")
            before = (await summary(api))["requests_by_route"].get(LOGIN, 0)
            await _logins(api, email, 7)
            await _background_round(state, time.time())  # one that saw the 7
            await _kill_and_wait(local_stack, api, email)
            await _logins(api, email, 4)
            after = (await summary(api))["requests_by_route"].get(LOGIN, 0)
            own = await _logins_counted(api, local_stack.services["auth"].url)
    # the 7 from before the restart, and what the restarted process counted itself: the
    # probes that reached it (one or more, a refusal counts too) and 4 more; none lost
    assert own >= 5 and after - before == 7 + own


async def _logins_counted(api: ApexClient, url: str) -> float:
    samples = _samples((await api.http.get(f"{url}/metrics")).text)
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "apex_http_requests_total" and ("route", LOGIN) in labels
    )


async def _kill_and_wait(stack: Stack, api: ApexClient, email: str) -> None:
    """SIGKILL the auth service; back once the restarted one signs the user in."""
    auth = stack.services["auth"]
    old_pid = auth.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    await eventually(lambda: _back(api, email, old_pid, auth.pid), 20, interval=0.1)


PROBES = ("aaa-probe", "zzz-probe")


async def _background_round(state: Any, since: float) -> None:
    """Wait for a whole round of the aggregator's own (every second, no summary asked for)
    that started after `since`."""

    async def scraped() -> bool:
        began = [at for at in state.times("/aaa-probe/metrics") if at > since]
        return bool(began) and any(at > began[0] for at in state.times("/zzz-probe/metrics"))

    await eventually(scraped, 1.6, interval=0.01)


async def _back(api: ApexClient, email: str, old_pid: int, pid: int | None) -> bool:
    try:
        await api.login(email, "correct horse battery")
    except (httpx.HTTPError, ApexError):
        return False
    return pid != old_pid
