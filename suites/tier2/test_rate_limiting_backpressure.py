"""Rate limiting and backpressure ($6K MRR): one noisy client cannot degrade the others.

Per-user HTTP limits and per-connection / per-user WebSocket limits answer with 429 or an
`error` frame carrying a retry hint, and recover after the window; a client that stops
reading slows its own stream down instead of growing the gateway's memory; nothing
accepted is lost. Load is bounded in count and time, and sent to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from apex.client import ApexClient, Endpoints, connect, gateway_http, receive
from apex.launcher import Stack

pytestmark = pytest.mark.anyio


async def test_per_user_http_limit_with_retry_after(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, noisy = await api.new_user("noisy")
        _, calm = await api.new_user("calm")
        url = f"{endpoints.backend}/api/credits"
        burst = await asyncio.gather(*(api.http.get(url, headers=noisy.header) for _ in range(250)))
        calm_status = (await api.http.get(url, headers=calm.header)).status_code
        limited = [r for r in burst if r.status_code == 429]
        assert limited and all(r.status_code in (200, 429) for r in burst)
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert 0 < limited[0].json()["retry_after_s"] <= 1
        assert calm_status == 200  # the limit is per user
        await asyncio.sleep(max(r.json()["retry_after_s"] for r in limited) + 0.05)
        assert (await api.http.get(url, headers=noisy.header)).status_code == 200


async def _pings(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    for n in range(count):
        await ws.send(json.dumps({"type": "ping", "payload": {"n": n}}))
    return [await receive(ws) for _ in range(count)]


async def test_per_connection_limit_answers_every_frame(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("pinger")
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        answers = await _pings(ws, 100)
        pongs = [a["payload"]["n"] for a in answers if a["type"] == "pong"]
        limited = [a["payload"] for a in answers if a["type"] == "error"]
        assert len(pongs) + len(limited) == 100  # every frame answered, accepted ones all served
        assert pongs == sorted(pongs) and len(pongs) >= 40
        assert limited and all(e["code"] == "rate_limited" for e in limited)
        await asyncio.sleep(limited[-1]["retry_after_ms"] / 1000 + 0.05)
        assert (await _pings(ws, 1))[0]["type"] == "pong"


async def test_per_user_limit_spans_connections(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("many-tabs")
    conns = [await connect(endpoints, tokens.access) for _ in range(8)]
    try:
        for ws in conns:
            await receive(ws)
        answers = await asyncio.gather(*(_pings(ws, 38) for ws in conns))
    finally:
        for ws in conns:
            await ws.close()
    frames = [a for per_conn in answers for a in per_conn]
    assert any(f["type"] == "error" and f["payload"]["code"] == "rate_limited" for f in frames)
    assert sum(f["type"] == "pong" for f in frames) <= 200  # 100 per second, at most 2 windows


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])


async def _stall(api: ApexClient, ws: ClientConnection, gateway: int) -> tuple[dict[str, Any], int]:
    """Start a long streamed answer, read nothing for 2 s; (gateway stats, RSS growth KiB)."""
    before = _rss_kib(gateway)
    await ws.send(
        json.dumps(
            {
                "type": "user_message",
                "payload": {
                    "content": "usage report",
                    "options": {"stream_chunk": 1, "repeat": 60},
                },
            }
        )
    )
    await asyncio.sleep(2.0)
    stats = await api.call(
        "GET", f"{gateway_http(api.ep)}/internal/stats", headers=await api.service_headers()
    )
    return stats, _rss_kib(gateway) - before


async def test_slow_consumer_gets_backpressure_not_unbounded_buffers(local_stack: Stack) -> None:
    endpoints = local_stack.endpoints()
    gateway = local_stack.services["gateway"].pid
    assert gateway is not None
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("slow")
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            stats, grown = await _stall(api, ws, gateway)
            frames = await _drain(ws)
    assert stats["largest_buffer"] <= 1000, stats
    assert stats["max_backlog"] <= 64, stats
    assert grown < 20_000, grown  # KiB: the stream waited for the reader instead of piling up
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing dropped
    assert len(frames) > 5000


async def _drain(ws: ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or (frames[-1]["type"], frames[-1]["payload"].get("agent")) != (
        "agent_completed",
        "supervisor",
    ):
        frames.append(await receive(ws, timeout=30))
    return frames
