"""Service discovery in Redis: each instance heartbeats its address and health with a TTL.

An instance that dies stops heartbeating and its record expires; one that turns unhealthy
says so in its next heartbeat. Callers resolve peers here instead of using fixed ports.
"""

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

PREFIX = "discovery"
INTERVAL = 0.5


class Discovery:
    def __init__(
        self,
        client: aioredis.Redis,
        service: str,
        url: str,
        ready: Callable[[], Awaitable[bool]],
        ttl: float,
    ) -> None:
        self.redis, self.service, self.url, self.ready = client, service, url, ready
        self.ttl, self.interval = ttl, min(INTERVAL, ttl / 4)  # several beats per TTL
        self.instance = f"{service}-{os.getpid()}-{secrets.token_hex(3)}"
        self.started_at = time.time()
        self.forced_unhealthy = False  # fault injection: alive but failing its checks

    @property
    def key(self) -> str:
        return f"{PREFIX}:{self.service}:{self.instance}"

    async def beat(self) -> None:
        healthy = not self.forced_unhealthy and await self.ready()
        record = {
            "service": self.service,
            "instance": self.instance,
            "url": self.url,
            "status": "healthy" if healthy else "unhealthy",
            "pid": os.getpid(),
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
        }
        await self.redis.set(self.key, json.dumps(record), px=int(self.ttl * 1000))

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis away: the record simply expires
                await self.beat()
            await asyncio.sleep(self.interval)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.delete(self.key)


async def resolve(
    client: aioredis.Redis, service: str = "*", healthy_only: bool = True
) -> list[dict[str, Any]]:
    """Live instances of `service` (or of every service), healthy ones only by default."""
    keys = [k async for k in client.scan_iter(match=f"{PREFIX}:{service}:*", count=200)]
    records = [json.loads(raw) for raw in (await client.mget(keys) if keys else []) if raw]
    return sorted(
        (r for r in records if r["status"] == "healthy" or not healthy_only),
        key=lambda r: (r["service"], r["instance"]),
    )


EMPTY_TTL = 0.02  # seconds "none is known" is believed (at start-up, the first answer)


class PeerResolver:
    """Round-robin over a service's healthy instances, re-read at most every `ttl` seconds
    (an empty answer every EMPTY_TTL: a gateway that asked before the backend registered
    is ready as soon as it has, not up to `ttl` later)."""

    def __init__(self, client: aioredis.Redis, service: str, ttl: float = 0.25) -> None:
        self.redis, self.service, self.ttl = client, service, ttl
        self.cached: list[str] = []
        self.read_at = 0.0
        self.turn = 0  # pragma: no mutate - where the rotation starts: every start is fair

    async def url(self) -> str | None:
        fresh_for = self.ttl if self.cached else min(self.ttl, EMPTY_TTL)
        if time.monotonic() - self.read_at > fresh_for:
            self.cached = [r["url"] for r in await resolve(self.redis, self.service)]
            self.read_at = time.monotonic()
        if not self.cached:
            return None
        self.turn += 1
        return self.cached[self.turn % len(self.cached)]
