"""Error cascade prevention and recovery ($10K MRR): one failing part must not take the rest.

When the backend stalls, auth stays healthy, connected clients get an `error` frame instead
of a hung request, the gateway's circuit breaker opens (then fails fast) and later closes;
the same client, without logging in again, gets answers once the backend is back. A stalled
Redis turns into quick 503s and honest readiness, not hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apex.client import ApexClient, ApexError, Endpoints, ask, connect, gateway_http, receive
from apex.launcher import Stack

pytestmark = pytest.mark.anyio


@contextlib.contextmanager
def _pause(pid: int) -> Iterator[None]:
    """SIGSTOP a process (a stall: alive, silent), always resumed afterwards."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def _breaker(api: ApexClient) -> dict[str, Any]:
    stats = await api.call(
        "GET", f"{gateway_http(api.ep)}/internal/stats", headers=await api.service_headers()
    )
    return dict(stats["breaker"])


async def _timed_ask(ws: Any, content: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    frames = await ask(ws, content, timeout=8)
    return time.perf_counter() - started, frames[-1]


async def test_backend_outage_is_contained_and_recovered(local_stack: Stack) -> None:
    endpoints = local_stack.endpoints()
    backend = local_stack.services["backend"]
    assert backend.pid is not None
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("cascade")
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            with _pause(backend.pid):
                await _during_outage(api, ws, tokens)
            await _after_recovery(api, ws)


async def _during_outage(api: ApexClient, ws: Any, tokens: Any) -> None:
    took, last = await _timed_ask(ws, "usage please")
    assert last["type"] == "error" and last["payload"]["code"] == "backend_unavailable"
    assert took < 4  # the gateway's timeout answers; the client is never left hanging
    await _timed_ask(ws, "usage please")  # the second failure opens the breaker
    took, last = await _timed_ask(ws, "usage please")
    assert last["payload"]["code"] == "circuit_open" and took < 0.5
    assert last["payload"]["retry_after_ms"] > 0
    assert (await _breaker(api))["state"] == "open"
    assert (await api.me(tokens))["user_id"]  # auth is unaffected
    health = await api.http.get(f"{api.ep.auth}/health/ready", timeout=1)
    assert health.status_code == 200


async def _after_recovery(api: ApexClient, ws: Any) -> None:
    await asyncio.sleep(1.1)  # the breaker's cooldown
    deadline = time.monotonic() + 15
    while True:
        _, last = await _timed_ask(ws, "usage please")
        if last["type"] == "agent_completed" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert last["type"] == "agent_completed"  # same connection, no new login
    breaker = await _breaker(api)
    assert breaker["state"] == "closed"
    assert breaker["transitions"][-3:] == ["open", "half_open", "closed"]


async def test_redis_stall_gives_fast_503s_and_honest_readiness(local_stack: Stack) -> None:
    endpoints = local_stack.endpoints()
    assert local_stack.redis is not None and local_stack.redis.proc is not None
    async with httpx.AsyncClient(timeout=10) as http:
        with _pause(local_stack.redis.proc.pid):
            started = time.perf_counter()
            live = await http.get(f"{endpoints.auth}/health")
            ready = await http.get(f"{endpoints.auth}/health/ready")
            probe_time = time.perf_counter() - started
            login = await http.post(
                f"{endpoints.auth}/auth/login",
                json={"email": "x@example.test", "password": "irrelevant"},
            )
        assert live.status_code == 200 and ready.status_code == 503
        assert ready.json()["checks"] == {"redis": False}
        assert probe_time < 1.5
        assert login.status_code in (401, 503)  # argon2 check needs no Redis; no hang either
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("after-stall")
        assert (await api.me(tokens))["user_id"]


async def test_expired_or_missing_backend_answer_is_an_error_not_a_hang(
    endpoints: Endpoints,
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("garbage")
        with pytest.raises(ApexError) as bad:
            await api.call(
                "POST", f"{endpoints.backend}/api/agent/run", content=b"{", headers=tokens.header
            )
    assert bad.value.status == 400
