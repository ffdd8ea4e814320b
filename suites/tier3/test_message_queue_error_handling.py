"""Message queue processing with error handling ($4K MRR): background work is never lost.

Redis Streams with consumer groups: at-least-once delivery with idempotent handling,
per-key ordering, priorities, retries with backoff, a dead-letter stream for poison
messages, and pending messages of a dead worker claimed by another. Workers are real
processes (`python -m apex.worker`).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from apex.client import Endpoints
from apex.mq import Queue
from suites.platform import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
async def queue(endpoints: Endpoints) -> AsyncIterator[Queue]:
    if not endpoints.redis:
        pytest.skip("needs REDIS_URL")
    client = aioredis.Redis.from_url(endpoints.redis, decode_responses=True)
    q = Queue(client, f"suite-{uuid.uuid4().hex[:8]}")
    await q.setup()
    yield q
    await client.aclose()


LEASE_MS = 1000  # a dead worker's partitions pass to an heir after this (default 2 s)


def _start_worker(endpoints: Endpoints, queue: Queue, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apex.worker",
            "--queue",
            queue.name,
            "--consumer",
            name,
            "--redis",
            endpoints.redis,
            "--lease-ms",
            str(LEASE_MS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None and "ready" in proc.stdout.readline()
    return proc


@pytest.fixture
def workers(endpoints: Endpoints, queue: Queue) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def _log(queue: Queue, key: str) -> list[str]:
    values: list[Any] = await queue.redis.lrange(f"mq:{queue.name}:log:{key}", 0, -1)
    return [str(v) for v in values]


async def _log_has(queue: Queue, key: str, count: int, timeout: float = 10) -> list[str]:
    async def full() -> bool:
        return len(await _log(queue, key)) >= count

    await eventually(full, timeout, interval=0.02)
    return await _log(queue, key)


async def test_per_key_order_and_idempotent_redelivery(
    endpoints: Endpoints, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    for n in range(30):
        await queue.publish("record", {"value": n}, key=f"k{n % 3}", message_id=f"m{n}")
    await queue.publish("record", {"value": 0}, key="k0", message_id="m0")  # delivered twice
    workers.append(_start_worker(endpoints, queue, "w1"))
    logs = [await _log_has(queue, f"k{k}", 10) for k in range(3)]
    time_left = time.monotonic() + 0.5
    while time.monotonic() < time_left:  # give a duplicate every chance to show up
        assert len(await _log(queue, "k0")) == 10
    assert logs == [[str(n) for n in range(k, 30, 3)] for k in range(3)]


async def test_high_priority_goes_first(
    endpoints: Endpoints, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    for n in range(8):
        await queue.publish("record", {"value": f"low{n}"}, key="p", priority="low")
    for n in range(4):
        await queue.publish("record", {"value": f"high{n}"}, key="p", priority="high")
    workers.append(_start_worker(endpoints, queue, "w1"))
    log = await _log_has(queue, "p", 12)
    assert log[:4] == [f"high{n}" for n in range(4)]
    assert log[4:] == [f"low{n}" for n in range(8)]


async def test_retries_with_backoff_then_dead_letter(
    endpoints: Endpoints, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    await queue.publish("flaky", {"value": "recovered", "fail_times": 2}, key="r")
    await queue.publish("poison", {"value": "never"}, key="r")
    await queue.publish("record", {"value": "after"}, key="r")
    started = time.monotonic()
    workers.append(_start_worker(endpoints, queue, "w1"))
    log = await _log_has(queue, "r", 2)
    assert log == ["recovered", "after"]  # the poison message did not block the key forever
    assert time.monotonic() - started > 0.05 + 0.1  # backoff between the attempts
    dead: Any = await queue.redis.xrange(queue.dead)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["kind"] == "poison" and fields["attempts"] == "3"
    assert "never be processed" in fields["error"]


async def test_a_dead_workers_pending_message_is_claimed(
    endpoints: Endpoints, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    first = _start_worker(endpoints, queue, "doomed")
    workers.append(first)
    # the job outlasts the moment the worker is killed, and stays within the lease
    await queue.publish("slow", {"value": "survived", "seconds": 0.8}, key="d")

    async def picked_up() -> bool:
        pending = await queue.redis.xpending(
            queue.stream("normal", queue.partition("d")), "workers"
        )
        return int(pending["pending"]) == 1

    await eventually(picked_up, 5, interval=0.02)
    first.kill()  # dies mid-job: the message stays pending, un-acknowledged
    first.wait()
    workers.append(_start_worker(endpoints, queue, "heir"))
    assert await _log_has(queue, "d", 1, timeout=15) == ["survived"]
