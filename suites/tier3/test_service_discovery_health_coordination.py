"""Service discovery and health check coordination ($8K MRR): peers find each other by name.

Every service registers its address and health with a TTL and heartbeats; one that dies or
turns unhealthy drops out; the gateway reaches the backend through discovery, not a fixed
port, and is ready only while its dependencies are.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from apex.client import ApexClient, Endpoints, gateway_http
from apex.discovery import PREFIX, resolve
from apex.launcher import Stack
from suites.platform import eventually, service_urls

pytestmark = pytest.mark.anyio


async def _registry(endpoints: Endpoints) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(endpoints.redis, decode_responses=True)
    try:
        return await resolve(client, healthy_only=False)
    finally:
        await client.aclose()


def _latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest instance of each service (a restarted one lingers until its TTL ends)."""
    newest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["started_at"] >= newest.get(record["service"], {"started_at": 0})["started_at"]:
            newest[record["service"]] = record
    return newest


@pytest.fixture
def redis_url(endpoints: Endpoints) -> str:
    if not endpoints.redis:
        pytest.skip("needs REDIS_URL to read the registry")
    return endpoints.redis


@pytest.mark.usefixtures("redis_url")
async def test_every_service_registers_and_heartbeats(endpoints: Endpoints) -> None:
    async def settled() -> bool:  # a heartbeat may still report a peer that just restarted
        return all(r["status"] == "healthy" for r in _latest(await _registry(endpoints)).values())

    await eventually(settled, 5, interval=0.1)
    first = _latest(await _registry(endpoints))
    assert {name: first[name]["url"] for name in service_urls(endpoints)} == service_urls(endpoints)
    assert all(r["status"] == "healthy" for r in first.values())
    await asyncio.sleep(1.2)
    later = {r["instance"]: r for r in await _registry(endpoints)}
    assert all(later[r["instance"]]["heartbeat_at"] > r["heartbeat_at"] for r in first.values())
    client = aioredis.Redis.from_url(endpoints.redis, decode_responses=True)
    ttl = await client.pttl(f"{PREFIX}:backend:{first['backend']['instance']}")
    await client.aclose()
    assert 0 < ttl <= 3000


async def _gateway_ready(endpoints: Endpoints) -> bool:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{gateway_http(endpoints)}/health/ready", timeout=2)
    return resp.status_code == 200


async def _set_unhealthy(api: ApexClient, flag: bool) -> None:
    await api.call(
        "POST",
        f"{api.ep.backend}/internal/fault",
        json={"unhealthy": flag},
        headers=await api.service_headers(),
    )


@pytest.mark.usefixtures("faults", "redis_url")
async def test_unhealthy_backend_is_not_used_even_though_its_port_answers(
    endpoints: Endpoints,
) -> None:
    async with ApexClient(endpoints) as api:
        await _set_unhealthy(api, True)
        try:
            await eventually(lambda: _not(_gateway_ready(endpoints)), 3, interval=0.05)
            statuses = {r["service"]: r["status"] for r in await _registry(endpoints)}
            assert statuses["backend"] == "unhealthy"
            assert (await api.http.get(f"{endpoints.backend}/health")).status_code == 200
        finally:
            await _set_unhealthy(api, False)
        await eventually(lambda: _gateway_ready(endpoints), 3, interval=0.05)


async def _not(probe: Any) -> bool:
    return not await probe


async def test_a_dead_backend_drops_out_and_comes_back(local_stack: Stack) -> None:
    endpoints = local_stack.endpoints()
    pid = local_stack.services["backend"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # silent: no heartbeat, no answer
    try:
        started = time.monotonic()

        async def gone() -> bool:
            return "backend" not in {r["service"] for r in await _registry(endpoints)}

        await eventually(gone, 6, interval=0.1)
        dropped_after = time.monotonic() - started
        assert not await _gateway_ready(endpoints)  # readiness follows the dependency
    finally:
        os.kill(pid, signal.SIGCONT)
    await eventually(lambda: _gateway_ready(endpoints), 5, interval=0.05)
    ttl = float(local_stack.env.get("APEX_DISCOVERY_TTL", "3.0"))
    assert ttl * 0.6 < dropped_after < ttl + 2.0  # the TTL, give or take a heartbeat
