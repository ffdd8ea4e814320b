"""Readers of the service registry for the discovery suite, written against the record format
(`discovery:{service}:{instance}`, JSON) rather than through apex.discovery."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from apex.launcher import Stack


async def records(client: aioredis.Redis) -> list[dict[str, Any]]:
    """Every record in the registry, healthy or not."""
    keys = [k async for k in client.scan_iter(match="discovery:*", count=500)]
    raw: list[Any] = await client.mget(keys) if keys else []
    return [json.loads(r) for r in raw if r]


def current(found: list[dict[str, Any]], stack: Stack) -> dict[str, dict[str, Any]]:
    """Each service's record from the process now running it (a restarted service's old
    record lingers until its TTL ends)."""
    pids = {name: svc.pid for name, svc in stack.services.items()}
    return {r["service"]: r for r in found if pids.get(r["service"]) == r["pid"]}


@dataclass(frozen=True)
class Sample:
    record: dict[str, Any]
    pttl: int  # ms left on the record
    set_ms: float  # the TTL it was written with, as far as this reading can tell


async def watch(client: aioredis.Redis, seconds: float) -> dict[str, list[Sample]]:
    """Read every record with its remaining TTL, every 10 ms for `seconds`, by instance."""
    seen: dict[str, list[Sample]] = defaultdict(list)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        keys = [k async for k in client.scan_iter(match="discovery:*", count=500)]
        pipe = client.pipeline(transaction=True)  # a record and its TTL at one instant
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
        after = time.time()
        for raw, pttl in zip(replies[::2], replies[1::2], strict=True):
            if raw:
                record = json.loads(raw)
                set_ms = pttl + 1000 * (after - record["heartbeat_at"])
                seen[record["instance"]].append(Sample(record, int(pttl), set_ms))
        await asyncio.sleep(0.01)
    return dict(seen)


def beat_gaps(samples: list[Sample]) -> list[float]:
    """Seconds between consecutive heartbeats seen."""
    beats = sorted({s.record["heartbeat_at"] for s in samples})
    return [b - a for a, b in itertools.pairwise(beats)]
