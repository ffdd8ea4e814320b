"""Service discovery and health check coordination ($8K MRR): peers find each other by name.

Every service registers its address and health with a TTL and heartbeats four times a TTL
(at most every 0.5 s); one that dies drops out within its TTL, one that stops deregisters at
once, one whose checks fail (or that is told to fail them) says so; the gateway reaches the
backend through discovery, re-reading it within a quarter second, and is ready only while
a healthy backend answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from apex.client import ApexClient, Endpoints, ask, connect, gateway_http
from apex.launcher import Stack
from apex.tls import tls
from suites.platform import eventually, extra_instance, key_gone, service_urls
from suites.tier3.discovery_support import beat_gaps, current, records, watch
from suites.tier3.fakes import FakeState, fake_server, record, register

pytestmark = pytest.mark.anyio
RECORD_FIELDS = {"service", "instance", "url", "status", "pid", "started_at", "heartbeat_at"}
PROBE_TTL = 4.0  # the extra instance's: it beats every 0.5 s (the cap), not every TTL/4


@pytest.fixture
async def registry(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    if not endpoints.redis:
        pytest.skip("needs REDIS_URL to read the registry")
    client = aioredis.Redis.from_url(endpoints.redis, decode_responses=True)
    yield client
    await client.aclose()


async def _statuses(client: aioredis.Redis, stack: Stack) -> dict[str, str]:
    return {n: r["status"] for n, r in current(await records(client), stack).items()}


async def _ready(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(verify=tls(), timeout=2.0) as http:
        resp = await http.get(f"{url}/health/ready")
    return resp.status_code, dict(resp.json()["checks"])


def _probe_beating(client: aioredis.Redis, pid: int | None) -> Any:
    """A probe: the extra instance is registered, healthy, and past its start-up (which
    beats twice in a row: once before it answers, once as its heartbeat loop starts)."""
    beats: set[float] = set()

    async def regular() -> bool:
        mine = [r for r in await records(client) if r["pid"] == pid and r["status"] == "healthy"]
        beats.update(r["heartbeat_at"] for r in mine)
        return len(beats) >= 3

    return regular


async def test_every_instance_registers_beats_within_its_ttl_and_leaves_at_once(
    local_stack: Stack, registry: aioredis.Redis, tmp_path: Path
) -> None:
    ttl = float(local_stack.env["APEX_DISCOVERY_TTL"])  # 1.5 s: a beat every 0.375 s
    with extra_instance(local_stack, "idp", tmp_path, APEX_DISCOVERY_TTL=str(PROBE_TTL)) as probe:
        await eventually(_probe_beating(registry, probe.pid), 15, interval=0.02)
        seen = await watch(registry, 1.2)
        mine = current([s[-1].record for s in seen.values()], local_stack)
        _assert_records(mine, local_stack)
        gaps = [g for rec in mine.values() for g in _assert_beats(seen[rec["instance"]], ttl)]
        assert ttl / 4 - 0.01 <= min(gaps) < ttl / 4 + 0.095, gaps  # every TTL/4
        (probed,) = [s for s in seen.values() if s[-1].record["pid"] == probe.pid]
        assert 0.49 <= min(_assert_beats(probed, PROBE_TTL)) < 0.8  # every 0.5 s, the cap
        assert 3998.5 <= min(s.set_ms for s in probed) < 4003  # written with PX 4000
        key = f"discovery:idp:{probed[-1].record['instance']}"
        assert probe.pid is not None
        os.kill(probe.pid, signal.SIGTERM)
        left = await eventually(lambda: key_gone(registry, key), PROBE_TTL - 1, interval=0.01)
    assert left < 1.0  # deregistered on its way out, not left to expire


def _assert_records(mine: dict[str, dict[str, Any]], stack: Stack) -> None:
    urls = service_urls(stack.endpoints())
    assert {name: r["url"] for name, r in mine.items()} == urls
    for name, rec in mine.items():
        assert set(rec) == RECORD_FIELDS and rec["status"] == "healthy", rec
        assert re.fullmatch(rf"{name}-{rec['pid']}-[0-9a-f]{{6}}", rec["instance"]), rec


def _assert_beats(samples: list[Any], ttl: float) -> list[float]:
    """The seconds between heartbeats; each written with the TTL, renewed in time."""
    gaps = beat_gaps(samples)
    assert gaps, "no two heartbeats seen"
    ttls = [s.pttl for s in samples]
    assert ttl * 1000 - 100 < max(ttls) <= ttl * 1000, ttls  # written with PX = the TTL
    assert min(ttls) > (ttl - max(gaps)) * 1000 - 100, (ttls, gaps)  # renewed in time
    return gaps


async def _set_unhealthy(api: ApexClient, flag: bool) -> None:
    await api.call(
        "POST",
        f"{api.ep.backend}/internal/fault",
        json={"unhealthy": flag},
        headers=await api.service_headers(),
    )


@pytest.mark.usefixtures("faults")
async def test_an_unhealthy_backend_is_not_used_even_though_its_port_answers(
    local_stack: Stack, registry: aioredis.Redis
) -> None:
    gateway, backend = gateway_http(local_stack.endpoints()), local_stack.endpoints().backend
    async with ApexClient(local_stack.endpoints()) as api:
        await _set_unhealthy(api, True)
        try:  # said at once, or by the next heartbeat if one was under way
            await eventually(lambda: _backend_is(registry, local_stack, "unhealthy"), 1, 0.01)
            await eventually(lambda: _is(_ready(gateway), (503, _GW_DOWN)), 3, interval=0.02)
            assert (await api.http.get(f"{backend}/health")).status_code == 200
            assert (await _ready(backend))[0] == 200  # its own checks pass: only discovery
        finally:
            await _set_unhealthy(api, False)
    await eventually(lambda: _backend_is(registry, local_stack, "healthy"), 1, interval=0.01)
    await eventually(lambda: _is(_ready(gateway), (200, _GW_UP)), 3, interval=0.02)


async def _backend_is(client: aioredis.Redis, stack: Stack, status: str) -> bool:
    return (await _statuses(client, stack)).get("backend") == status


_GW_DOWN = {"redis": True, "backend": False}
_GW_UP = {"redis": True, "backend": True}


async def _is(probe: Any, expected: Any) -> bool:
    return bool(await probe == expected)


async def test_a_silent_backend_drops_out_within_its_ttl_and_comes_back(
    local_stack: Stack, registry: aioredis.Redis
) -> None:
    ttl = float(local_stack.env["APEX_DISCOVERY_TTL"])
    gateway, pid = gateway_http(local_stack.endpoints()), local_stack.services["backend"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # silent: no heartbeat, no answer
    try:
        started = time.monotonic()

        async def gone() -> bool:
            return "backend" not in await _statuses(registry, local_stack)

        # the gateway's own health rests on a real check: the backend does not answer
        await eventually(lambda: _gateway_unhealthy(registry, local_stack), ttl, interval=0.02)
        await eventually(gone, ttl + 1, interval=0.02)
        dropped_after = time.monotonic() - started
        assert await _ready(gateway) == (503, _GW_DOWN)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ttl - ttl / 4 - 0.1 < dropped_after < ttl + 0.5  # the TTL, give or take a beat
    await eventually(lambda: _is(_ready(gateway), (200, _GW_UP)), 5, interval=0.05)


async def _gateway_unhealthy(client: aioredis.Redis, stack: Stack) -> bool:
    return (await _statuses(client, stack)).get("gateway") == "unhealthy"


def _fake_backend(state: FakeState, prefix: str) -> None:
    answer = {"type": "agent_completed", "payload": {"agent": "supervisor", "by": "fake"}}
    state.replies[f"{prefix}/health"] = (200, "application/json", b'{"status": "ok"}')
    state.replies[f"{prefix}/api/agent/run"] = (
        200,
        "application/x-ndjson",
        json.dumps(answer).encode() + b"\n",
    )


async def test_agent_runs_go_to_a_backend_found_in_discovery(
    endpoints: Endpoints, registry: aioredis.Redis
) -> None:
    with fake_server() as (url, state):
        _fake_backend(state, "")
        key = await register(registry, record("backend", "backend-0-fake01", url))
        try:
            async with ApexClient(endpoints) as api:
                _, tokens = await api.new_user("discovery")
            async with await connect(endpoints, tokens.access) as ws:
                served_by = await _serving(ws)
        finally:
            await registry.delete(key)
    assert set(served_by) == {"fake", "backend"}  # both instances take turns
    assert len(state.times("/api/agent/run")) == served_by.count("fake")


async def _serving(ws: Any, most: int = 12) -> list[str]:
    """Ask until both the fake and the real backend answered: who answered each run."""
    served_by: list[str] = []
    while len(set(served_by)) < 2 and len(served_by) < most:
        frames = await ask(ws, "hello")
        assert frames[-1]["type"] == "agent_completed", frames[-1]
        served_by.append(frames[-1]["payload"].get("by", "backend"))
    return served_by


@pytest.mark.usefixtures("faults")
async def test_the_gateway_rereads_discovery_within_a_quarter_second(
    local_stack: Stack, registry: aioredis.Redis
) -> None:
    """With the real backend out of the healthy set, the fake is the only backend: every
    readiness probe of the gateway asks it, until the gateway's next re-read drops it."""
    gateway = gateway_http(local_stack.endpoints())
    async with ApexClient(local_stack.endpoints()) as api:
        await _set_unhealthy(api, True)
        try:
            await eventually(lambda: _backend_is(registry, local_stack, "unhealthy"), 1, 0.01)
            with fake_server() as (url, state):
                _fake_backend(state, "")
                key = await register(registry, record("backend", "backend-0-fake02", url))
                registered = time.time()
                await _hammer(gateway, state, until_hit=True)
                await registry.delete(key)  # just after the gateway re-read the registry
                removed = time.time()
                await _hammer(gateway, state, seconds=0.5)
        finally:
            await _set_unhealthy(api, False)
    hits = state.times("/health")
    assert hits[0] - registered < 0.4  # seen at the next re-read
    stale = [t for t in hits if t > removed + 0.03]  # still used for the rest of its 0.25 s
    assert stale and max(stale) < removed + 0.35, (removed, stale)  # then dropped


async def _hammer(
    gateway: str, state: FakeState, until_hit: bool = False, seconds: float = 2.0
) -> None:
    """Readiness probes of the gateway, back to back (each asks a backend for /health)."""
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(verify=tls(), timeout=2.0) as http:
        while time.monotonic() < until and not (until_hit and state.times("/health")):
            await http.get(f"{gateway}/health/ready")
    assert not until_hit or state.times("/health"), "the gateway never used the new instance"


@pytest.mark.usefixtures("faults")
async def test_every_service_registers_again_after_a_redis_stall(
    local_stack: Stack, registry: aioredis.Redis
) -> None:
    ttl = float(local_stack.env["APEX_DISCOVERY_TTL"])
    if local_stack.redis is None or local_stack.redis.proc is None:
        pytest.skip("needs the Redis this stack started")
    pid = local_stack.redis.proc.pid
    os.kill(pid, signal.SIGSTOP)  # every record runs out, every heartbeat times out
    try:
        await asyncio.sleep(float(local_stack.env["APEX_REDIS_TIMEOUT"]) + 0.3)  # past it
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.time()

    async def all_back() -> bool:
        mine = current(await records(registry), local_stack)
        fresh = {n for n, r in mine.items() if r["heartbeat_at"] > resumed}
        return fresh == set(local_stack.services)

    assert await eventually(all_back, 3, interval=0.02) < ttl
