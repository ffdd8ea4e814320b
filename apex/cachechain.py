"""Dependent caches kept correct across services by an invalidation chain over pub/sub.

Derived values depend on each other: `price:{model}` (the catalog) -> `plan:{model}` ->
`quote:{model}`. A write bumps the catalog version and publishes one invalidation; every
service evicts the entry and its dependents in dependency order and acknowledges. The
writer answers only when every live instance has acknowledged, so no read that starts
after the writer's answer can see a stale value; a computation that read an older version
is never cached (the version floor).
"""

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis

CHANNEL = "apex:invalidate"
ACK_CHANNEL = "apex:invalidate-ack"
CATALOG = "catalog:prices"
VERSION = "catalog:version"
CHAIN = ("price", "plan", "quote")
FACTOR = {"plan": 1.5, "quote": 1.2}


class ChainCache:
    def __init__(self, client: aioredis.Redis, service: str, instance: str) -> None:
        self.redis, self.service, self.instance = client, service, instance
        self.entries: dict[str, tuple[float, int]] = {}
        self.floor: dict[str, int] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=100)
        self.delay = 0.0  # fault injection: a slow subscriber

    async def get(self, key: str) -> tuple[float | None, bool]:
        """(value, served from cache?) for `kind:model`; None if the model is unknown."""
        if key in self.entries:
            return self.entries[key][0], True
        kind, _, model = key.partition(":")
        if kind not in CHAIN:
            return None, False
        value, version = await self._compute(kind, model)
        if value is not None and version >= self.floor.get(model, 0):
            self.entries[key] = (value, version)
        return value, False

    async def _compute(self, kind: str, model: str) -> tuple[float | None, int]:
        if kind == "price":
            pipe = self.redis.pipeline()
            pipe.hget(CATALOG, model)
            pipe.get(VERSION)
            price, version = await pipe.execute()
            return (float(price) if price is not None else None), int(version or 0)
        base = CHAIN[CHAIN.index(kind) - 1]
        value, _ = await self.get(f"{base}:{model}")
        version = self.entries.get(f"{base}:{model}", (0.0, 0))[1]
        return (round(value * FACTOR[kind], 4) if value is not None else None), version

    def invalidate(self, model: str, version: int) -> list[str]:
        """Evict the model's entries, the source first, then what depends on it."""
        # versions start at 1: any default floor below that is the same
        self.floor[model] = max(self.floor.get(model, 0), version)  # pragma: no mutate
        order = [f"{kind}:{model}" for kind in CHAIN]
        for key in order:
            self.entries.pop(key, None)
        return order

    async def follow(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await self._listen(pubsub)
            self.entries.clear()  # a broken subscription may have missed invalidations
            await asyncio.sleep(0.2)

    async def _listen(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            event = json.loads(message["data"])
            await asyncio.sleep(self.delay)
            order = self.invalidate(event["model"], int(event["version"]))
            self.log.append({"id": event["id"], "order": order, "at": time.time()})
            await self.redis.publish(
                ACK_CHANNEL,
                json.dumps({"id": event["id"], "service": self.service, "instance": self.instance}),
            )


async def write_price(
    client: aioredis.Redis, model: str, price: float, expected: set[str], timeout: float = 1.0
) -> dict[str, Any]:
    """Write, invalidate everywhere, and return once every `expected` instance acknowledged."""
    started = time.perf_counter()
    event_id = secrets.token_hex(8)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(ACK_CHANNEL)
        pipe = client.pipeline(transaction=True)
        pipe.hset(CATALOG, model, str(price))
        pipe.incr(VERSION)
        _, version = await pipe.execute()
        await client.publish(
            CHANNEL, json.dumps({"id": event_id, "model": model, "version": int(version)})
        )
        acked = await _acks(pubsub, event_id, expected, started + timeout)
    return {
        "version": int(version),
        "acked_by": sorted(acked),
        "missing": sorted(expected - acked),
        "propagation_ms": round(1000 * (time.perf_counter() - started), 3),
    }


async def _acks(pubsub: Any, event_id: str, expected: set[str], deadline: float) -> set[str]:
    acked: set[str] = set()
    while not expected <= acked and time.perf_counter() < deadline:
        message = await pubsub.get_message(
            ignore_subscribe_messages=True, timeout=max(0.001, deadline - time.perf_counter())
        )
        if message is not None:
            ack = json.loads(message["data"])
            if ack["id"] == event_id:
                acked.add(ack["instance"])
    return acked
