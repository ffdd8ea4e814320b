"""Metrics collection and aggregation pipeline ($7K MRR): the numbers on-call relies on.

Every service exposes Prometheus text (prometheus-client); the aggregator scrapes the
services it finds through discovery and produces totals, rates and latency percentiles
across them, and its counters survive a service restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apex.client import ApexClient, ApexError, Endpoints
from apex.launcher import Stack
from suites.platform import eventually, service_urls

pytestmark = pytest.mark.anyio
LOGIN = "/auth/login"


async def _summary(api: ApexClient) -> dict[str, Any]:
    return dict(
        await api.call(
            "GET", f"{api.ep.backend}/internal/metrics/summary", headers=await api.service_headers()
        )
    )


async def _logins(api: ApexClient, email: str, count: int) -> None:
    for _ in range(count):
        await api.login(email, "correct horse battery")


async def test_every_service_exposes_prometheus_text(endpoints: Endpoints) -> None:
    async with httpx.AsyncClient() as http:
        for name, url in service_urls(endpoints).items():
            await http.get(f"{url}/health")
            text = (await http.get(f"{url}/metrics")).text
            families = {f.name: f for f in text_string_to_metric_families(text)}
            assert families["apex_http_requests"].type == "counter", name
            assert families["apex_http_request_duration_seconds"].type == "histogram"
            services = {s.labels["service"] for s in families["apex_http_requests"].samples}
            assert services == {name}


async def test_totals_rates_and_percentiles_across_services(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        email, _ = await api.new_user("metrics")
        before = await _summary(api)
        await _logins(api, email, 25)
        after = await _summary(api)
    by_route = after["requests_by_route"].get(LOGIN, 0) - before["requests_by_route"].get(LOGIN, 0)
    assert by_route == 25
    assert set(after["requests_by_service"]) >= {"auth", "backend", "gateway"}
    assert after["requests_total"] >= before["requests_total"] + 25
    assert after["requests_per_s"] is not None and after["requests_per_s"] > 0
    latency = after["latency_s"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= 5


async def test_counters_survive_a_service_restart(local_stack: Stack) -> None:
    auth = local_stack.services["auth"]
    async with ApexClient(local_stack.endpoints()) as api:
        email, _ = await api.new_user("restart")
        before = (await _summary(api))["requests_by_route"].get(LOGIN, 0)
        await _logins(api, email, 7)
        await asyncio.sleep(1.3)  # one background scrape sees them
        old_pid = auth.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)

        async def back() -> bool:
            try:
                await api.login(email, "correct horse battery")
            except (httpx.HTTPError, ApexError):
                return False
            return auth.pid != old_pid

        await eventually(back, 20, interval=0.1)
        await _logins(api, email, 4)
        after = (await _summary(api))["requests_by_route"].get(LOGIN, 0)
    # 7 before the restart, the one probe that succeeded after it, 4 more: none lost
    assert after - before == 12
