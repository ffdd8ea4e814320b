"""Rate limiting and backpressure ($6K MRR): one noisy client cannot degrade the others.

Per-user HTTP limits and per-connection / per-user WebSocket limits admit exactly what they
promise in a window, answer the rest with 429 or an `error` frame whose retry hint ends with
the window, recover after it, and fail open when Redis cannot take their counts; a client
that stops reading slows its own stream down instead of growing the gateway's memory;
nothing accepted is lost. Load is bounded in count and time, and sent to 127.0.0.1 only.
The limits' counts are read from Redis directly (`rl:{limit}:{user_id}:{window}`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from apex.client import ApexClient, Endpoints, Tokens, connect, receive
from apex.launcher import Stack
from suites.platform import eventually, gateway_stats
from suites.tier2.direct import redis_of, user_id, writes_paused
from suites.tier2.frames import Sockets, fresh_window, next_window, pings, window_slot

pytestmark = pytest.mark.anyio
HTTP_LIMIT = 60  # per user and one-second window: APEX_HTTP_RATE of suites/conftest.py
WS_BURST, WS_RATE = 40, 20  # per connection: saved-up frames, frames per second
WS_USER_LIMIT = 100  # per user and one-second window, over all connections
HIGH_WATER = 64  # frames a stream may run ahead of a reader that stopped reading
TABS = 6  # connections of one user: 6 x 40 frames, > 100 in one window whatever the timing
PROBE = "/api/rate-limit-probe"  # no such route: whatever the limit lets through gets 404


Timed = tuple[float, float]  # (sent, arrived): wall-clock times of one call or frame


async def _timed_get(http: httpx.AsyncClient, url: str, **kw: Any) -> tuple[httpx.Response, Timed]:
    sent = time.time()
    resp = await http.get(url, **kw)
    return resp, (sent, time.time())


async def _until_refused(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], counted: Counted
) -> list[tuple[httpx.Response, Timed]]:
    """Keep 30 calls in flight until one is refused (at most 15 s: a busy machine may take a
    while to serve more than the limit in one window); the windows' counts are read all
    along (a count expires 2 s after its window's last call)."""
    answers: list[tuple[httpx.Response, Timed]] = []
    deadline, refused = time.monotonic() + 15, asyncio.Event()

    def going() -> bool:
        return not refused.is_set() and time.monotonic() < deadline

    async def caller() -> None:
        while going():
            answers.append(await _timed_get(http, url, headers=headers))
            if answers[-1][0].status_code == 429:
                refused.set()

    async def reader() -> None:
        while going():
            await counted.read()
            await asyncio.sleep(0.3)

    await asyncio.gather(*(caller() for _ in range(30)), reader())
    return answers


class Counted:
    """A limit's count per window for one user, as Redis holds it (the highest seen)."""

    def __init__(self, client: aioredis.Redis, limit: str, uid: str) -> None:
        self.client, self.prefix = client, f"rl:{limit}:{uid}:"
        self.first, self.counts = window_slot(), dict[int, int]()

    async def read(self) -> dict[int, int]:
        for slot in range(self.first, window_slot() + 1):
            count = int(await self.client.get(f"{self.prefix}{slot}") or 0)
            self.counts[slot] = max(count, self.counts.get(slot, 0))
        return self.counts


async def _counts(client: aioredis.Redis, limit: str, uid: str, slots: range) -> dict[int, int]:
    """The limit's count of each window, read from Redis."""
    return {s: int(await client.get(f"rl:{limit}:{uid}:{s}") or 0) for s in slots}


def _ends_a_window(timed: Timed, hint_s: float) -> None:
    """A refusal's hint is the time from when it was counted (between sending and arrival)
    to the end of that one-second window (the window of the sending or a later one)."""
    sent, arrived = timed
    assert 0 < hint_s <= 1, hint_s
    ends = range(math.floor(sent) + 1, math.floor(arrived) + 2)
    assert any(e - arrived - 0.002 <= hint_s <= e - sent + 0.002 for e in ends), (timed, hint_s)


def _three_decimals(hints: list[float]) -> None:
    """Hints are rounded to the millisecond, not coarser, not finer."""
    assert all(h == round(h, 3) for h in hints) and any(h != round(h, 2) for h in hints), hints


async def test_http_limit_is_exact_per_user_and_window(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, noisy = await api.new_user("noisy")
        _, calm = await api.new_user("calm")
        url, uid = api.ep.backend + PROBE, user_id(noisy)
        await fresh_window(0.7)
        counted = Counted(client, "http-user", uid)
        answers = await _until_refused(api.http, url, noisy.header, counted)
        counts = await counted.read()
        last = max(slot for slot, count in counts.items() if count)
        ttl = await client.pttl(f"rl:http-user:{uid}:{last}")
        calm_status = (await api.http.get(url, headers=calm.header)).status_code
        await next_window(last)
        after = (await api.http.get(url, headers=noisy.header)).status_code
    statuses = [r.status_code for r, _ in answers]
    assert sum(counts.values()) == len(answers)  # each call counted once, in its window
    assert statuses.count(404) == sum(min(c, HTTP_LIMIT) for c in counts.values()), counts
    assert statuses.count(429) == len(answers) - statuses.count(404) > 0
    refused = [(r.json(), r.headers["retry-after"], t) for r, t in answers if r.status_code == 429]
    for body, retry_after, timed in refused:
        assert (retry_after, body["error"]) == ("1", "rate limited")
        _ends_a_window(timed, body["retry_after_s"])
    _three_decimals([body["retry_after_s"] for body, _, _ in refused])
    assert 1000 < ttl <= 2000  # a window's count outlives it by a second, no more
    assert (calm_status, after) == (404, 404)  # the limit is per user; it ends with the window


async def test_http_limit_counts_only_api_calls_of_known_users(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, tokens = await api.new_user("uncounted")
        base = api.ep.backend
        cases = {
            "not an /api/ route": (f"{base}/health", tokens.header, 200),
            "no token": (base + PROBE, {}, 404),
            "a forged token": (base + PROBE, {"Authorization": "Bearer not-a-jwt"}, 404),
            "a refresh token": (base + PROBE, {"Authorization": f"Bearer {tokens.refresh}"}, 404),
        }
        answers = {
            name: [(await api.http.get(url, headers=h)).status_code for _ in range(3)]
            for name, (url, h, _) in cases.items()
        }
        keys = [k async for k in client.scan_iter(match="rl:http-user:*")]
    uid = user_id(tokens)
    assert answers == {name: [status] * 3 for name, (_, _, status) in cases.items()}
    assert [k for k in keys if uid in k or ":None:" in k] == []  # nobody's count moved


async def test_http_limit_fails_open_when_redis_writes_stall(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, tokens = await api.new_user("fail-open")
        url = api.ep.backend + PROBE
        async with writes_paused(client, seconds=6):
            started = time.perf_counter()
            during = await api.http.get(url, headers=tokens.header)
            took = time.perf_counter() - started
        slot = await fresh_window(0.5)
        after = await api.http.get(url, headers=tokens.header)
        counted = await client.get(f"rl:http-user:{user_id(tokens)}:{slot}")
    assert during.status_code == 404  # let through (the route answers), not 429 / 500 / 503
    timeout = float(local_stack.env["APEX_REDIS_TIMEOUT"])
    assert 0.75 * timeout < took < timeout + 2  # the count's write timed out; no hang
    assert (after.status_code, counted) == (404, "1")  # counting again once Redis writes


async def _timed_pings(ws: ClientConnection, count: int, first: int) -> list[tuple[Any, Timed]]:
    sent = time.time()
    for n in range(first, first + count):
        await ws.send(json.dumps({"type": "ping", "payload": {"n": n}}))
    return [(await receive(ws), (sent, time.time())) for _ in range(count)]


async def test_connection_bucket_burst_and_refill_are_exact(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("pinger")
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)  # hello; the connection's bucket is full
        started = time.perf_counter()
        burst = await pings(ws, 60)
        burst_s = time.perf_counter() - started
        refused = [f["payload"] for f in burst if f["type"] == "error"]
        await asyncio.sleep(refused[-1]["retry_after_ms"] / 1000 + 0.005)
        hinted = await pings(ws, 1, first=100)  # waiting as long as told is enough
        rested = time.perf_counter()
        await asyncio.sleep(0.5)  # 0.5 s at 20 per second: 10 more frames
        refill = await pings(ws, 20, first=200)
        refill_s = time.perf_counter() - rested - 0.5
    pongs = [f["payload"]["n"] for f in burst if f["type"] == "pong"]
    assert [f["type"] for f in burst[:WS_BURST]] == ["pong"] * WS_BURST
    assert pongs == sorted(pongs) and len(pongs) <= WS_BURST + 1 + WS_RATE * burst_s
    assert refused and all(e["code"] == "rate_limited" for e in refused)
    assert all(1 <= e["retry_after_ms"] <= 1000 / WS_RATE for e in refused), refused
    assert hinted[0]["type"] == "pong"
    refilled = sum(f["type"] == "pong" for f in refill)
    assert 9 <= refilled <= 11 + WS_RATE * refill_s, (refilled, refill_s)


async def _tabs_burst(
    stack: Stack, tokens: Tokens, calm: Tokens
) -> tuple[list[tuple[Any, Timed]], dict[str, Any], dict[int, int]]:
    """Each of the user's tabs sends a full bucket at once, in an odd window (a window's end
    must not depend on its parity); (answers, another user's answer, counts per window)."""
    sockets = Sockets(stack.endpoints())
    try:
        tabs = [(await sockets.open(tokens))[0] for _ in range(TABS)]
        other, _ = await sockets.open(calm)
        first = await fresh_window(0.7, odd=True)
        sent = [_timed_pings(ws, WS_BURST, 100 * i) for i, ws in enumerate(tabs)]
        answers = await asyncio.gather(*sent)  # within each connection's own bucket
        last = window_slot()
        calm_answer = (await pings(other, 1))[0]
        async with redis_of(stack) as client:
            counts = await _counts(client, "ws-user", user_id(tokens), range(first, last + 1))
    finally:
        await sockets.close_all()
    return [pair for per_conn in answers for pair in per_conn], calm_answer, counts


async def test_per_user_ws_limit_spans_connections_exactly(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("many-tabs")
        _, calm = await api.new_user("calm-tab")
    frames, calm_answer, counts = await _tabs_burst(local_stack, tokens, calm)
    assert sum(counts.values()) == TABS * WS_BURST, counts
    pongs = sum(f["type"] == "pong" for f, _ in frames)
    assert pongs == sum(min(c, WS_USER_LIMIT) for c in counts.values()) < TABS * WS_BURST
    for frame, timed in frames:
        if frame["type"] == "error":
            assert frame["payload"]["code"] == "rate_limited"
            _ends_a_window(timed, frame["payload"]["retry_after_ms"] / 1000)
    assert calm_answer["type"] == "pong"  # another user's budget is untouched


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])


async def _stall(api: ApexClient, ws: ClientConnection, gateway: int) -> tuple[dict[str, Any], int]:
    """Start a long streamed answer and read nothing until the stream is held back (and a
    while longer); (gateway stats, RSS growth KiB meanwhile)."""
    before = _rss_kib(gateway)
    options = {"stream_chunk": 1, "repeat": 60}
    payload = {"content": "usage report", "options": options}
    await ws.send(json.dumps({"type": "user_message", "payload": payload}))

    async def held() -> bool:
        return bool((await gateway_stats(api))["max_backlog"] >= HIGH_WATER)

    await eventually(held, 10, interval=0.02)
    await asyncio.sleep(0.5)  # held, not just passing through
    return await gateway_stats(api), _rss_kib(gateway) - before


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
    assert stats["max_backlog"] == HIGH_WATER, stats  # the stream waited for the reader
    assert grown < 20_000, grown  # KiB: nothing piled up in the gateway meanwhile
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing dropped, nothing twice
    assert len(frames) > 5000


async def _drain(ws: ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or (frames[-1]["type"], frames[-1]["payload"].get("agent")) != (
        "agent_completed",
        "supervisor",
    ):
        frames.append(await receive(ws, timeout=30))
    return frames
