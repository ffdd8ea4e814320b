"""Message queue processing with error handling ($4K MRR): background work is never lost.

Redis Streams with consumer groups: at-least-once delivery with idempotent handling,
per-key ordering, priorities, retries with backoff, a dead-letter stream for poison
messages, one worker per partition (a lease it keeps while a long job runs), and the
pending messages of a dead worker claimed by its heir. The workers are real: the backend's
own job worker, and `python -m apex.worker` processes.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from apex.client import Endpoints
from apex.launcher import Stack
from apex.mq import Queue
from apex.tls import tls
from suites.platform import eventually
from suites.tier3.mq_support import (
    WorkerProcess,
    drained,
    forget,
    log_of,
    log_reaches,
    pause_redis,
    stream,
    tries_of,
)

pytestmark = pytest.mark.anyio
LEASE_MS = 600  # a worker's partitions pass to another this long after it stops renewing
Spawn = Callable[[str], WorkerProcess]


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    if not endpoints.redis:
        pytest.skip("needs REDIS_URL")
    client = aioredis.Redis.from_url(endpoints.redis, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AsyncIterator[Queue]:
    q = Queue(redis_client, f"suite-{uuid.uuid4().hex[:8]}")
    await q.setup()
    yield q
    await forget(redis_client, f"mq:{q.name}:*")


@pytest.fixture
def workers(endpoints: Endpoints, queue: Queue, tmp_path: Path) -> Iterator[Spawn]:
    """Start workers on the test's queue; whatever still runs at the end is killed."""
    started: list[WorkerProcess] = []

    def spawn(consumer: str) -> WorkerProcess:
        worker = WorkerProcess(endpoints.redis, queue.name, consumer, tmp_path)
        started.append(worker)
        worker.start(LEASE_MS)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


@pytest.fixture
async def job_key(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key on the backend's own queue (`jobs`); its log is removed afterwards."""
    key = f"job-{uuid.uuid4().hex[:8]}"
    yield key
    await redis_client.delete(f"mq:jobs:log:{key}")


async def _backend_checks(backend: str) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=tls(), timeout=2.0) as http:
        return dict((await http.get(f"{backend}/health/ready")).json()["checks"])


async def test_the_backend_job_worker_handles_jobs_and_holds_every_partition(
    local_stack: Stack, redis_client: aioredis.Redis, job_key: str
) -> None:
    jobs = Queue(redis_client, "jobs")
    for n in range(5):  # one after another: the idle worker looks again every 0.05 s
        published = time.monotonic()
        await jobs.publish("record", {"value": f"v{n}"}, key=job_key)
        await log_reaches(redis_client, "jobs", job_key, n + 1, timeout=5)
        assert time.monotonic() - published < 0.5
    assert await log_of(redis_client, "jobs", job_key) == [f"v{n}" for n in range(5)]
    holder = f"backend-{local_stack.services['backend'].pid}"
    leases = [f"mq:jobs:lease:{part}" for part in range(4)]

    async def held() -> bool:  # a backend that restarted earlier: its old leases run out
        return [await redis_client.get(lease) for lease in leases] == [holder] * 4

    await eventually(held, 3, interval=0.05)
    ttls = [await redis_client.pttl(lease) for lease in leases]  # renewed at every step
    assert all(1800 < ttl <= 2000 for ttl in ttls), ttls
    checks = await _backend_checks(local_stack.endpoints().backend)
    assert checks == {"redis": True, "sqlite": True, "jobs_worker": True}


@pytest.mark.usefixtures("faults")
async def test_the_backend_job_worker_survives_a_redis_stall(
    local_stack: Stack, redis_client: aioredis.Redis, job_key: str
) -> None:
    try:
        stall = float(local_stack.env["APEX_REDIS_TIMEOUT"]) + 0.3
        await pause_redis(redis_client, stall)  # past the backend's Redis socket timeout
    finally:
        await redis_client.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
    await Queue(redis_client, "jobs").publish("record", {"value": "after"}, key=job_key)
    assert await log_reaches(redis_client, "jobs", job_key, 1, timeout=5) == ["after"]

    async def worker_alive() -> bool:
        return await _backend_checks(local_stack.endpoints().backend) == {
            "redis": True,
            "sqlite": True,
            "jobs_worker": True,
        }

    await eventually(worker_alive, 5, interval=0.05)


async def _publish_mix(queue: Queue, client: aioredis.Redis) -> None:
    """Three keys in order, a message delivered twice, low then high priority; each in
    the stream its key and priority pick."""
    for n in range(30):
        await queue.publish("record", {"value": n}, key=f"k{n % 3}", message_id=f"m{n}")
    await queue.publish("record", {"value": 0}, key="k0", message_id="m0")  # delivered twice
    for n in range(8):
        await queue.publish("record", {"value": f"low{n}"}, key="p", priority="low")
    for n in range(4):
        await queue.publish("record", {"value": f"high{n}"}, key="p", priority="high")
    names = [stream(queue.name, pr, part) for pr in ("high", "normal", "low") for part in range(4)]
    lengths = {name: await client.xlen(name) for name in names}
    assert {name: n for name, n in lengths.items() if n} == {
        stream(queue.name, "high", 1): 4,  # "p" is partition 1, "k0" and "k2" partition 3
        stream(queue.name, "normal", 1): 10,
        stream(queue.name, "normal", 3): 21,
        stream(queue.name, "low", 1): 8,
    }


async def test_per_key_order_priority_and_one_effect_per_message(
    queue: Queue, workers: Spawn, redis_client: aioredis.Redis
) -> None:
    await _publish_mix(queue, redis_client)
    burst = [await queue.publish("flaky", {"fail_times": 0}, key="b") for _ in range(12)]
    await workers("w1").ready_line()
    await eventually(lambda: drained(redis_client, queue.name, range(4)), 15, 0.005)
    started = [(await tries_of(redis_client, queue.name, m))[0][2] for m in burst]
    assert min(b - a for a, b in itertools.pairwise(started)) < 0.045  # back to back
    logs = [await log_of(redis_client, queue.name, f"k{k}") for k in range(3)]
    assert logs == [[str(n) for n in range(k, 30, 3)] for k in range(3)]
    expected = [f"high{n}" for n in range(4)] + [f"low{n}" for n in range(8)]
    assert await log_of(redis_client, queue.name, "p") == expected


async def test_retries_back_off_then_the_dead_letter_stream(
    queue: Queue, workers: Spawn, redis_client: aioredis.Redis
) -> None:
    flaky = await queue.publish("flaky", {"value": "recovered", "fail_times": 2}, key="r")
    once = await queue.publish("flaky", {"value": "second try"}, key="r")  # fails once
    poison = await queue.publish("poison", {"value": "never"}, key="r")
    unknown = await queue.publish("x" * 600, {}, key="r")
    await queue.publish("record", {"value": "after"}, key="r")
    await workers("w1").ready_line()
    assert await log_reaches(redis_client, queue.name, "r", 3) == [
        "recovered",
        "second try",
        "after",  # the failing ones did not block the key for long
    ]
    tries = {m: await tries_of(redis_client, queue.name, m) for m in (flaky, once, poison)}
    assert {m: [(w, a) for w, a, _ in t] for m, t in tries.items()} == {
        flaky: [("w1", 1), ("w1", 2), ("w1", 3)],
        once: [("w1", 1), ("w1", 2)],
        poison: [("w1", 1), ("w1", 2), ("w1", 3)],
    }
    for attempts in (tries[flaky], tries[poison]):  # backoff 0.05 s, then 0.1 s
        gaps = [b[2] - a[2] for a, b in itertools.pairwise(attempts)]
        assert 0.049 <= gaps[0] < 0.095 and 0.099 <= gaps[1] < 0.145, gaps
    await _assert_dead_letters(redis_client, queue.name, (poison, unknown), tries[poison][2][2])


NEVER = "this message can never be processed"


async def _assert_dead_letters(
    client: aioredis.Redis, name: str, ids: tuple[str, str], last_try: float
) -> None:
    poison, unknown = ids
    dead: Any = await client.xrange(f"mq:{name}:dead")
    assert [fields for _, fields in dead] == [
        _dead(poison, "poison", '{"value": "never"}', name, "ValueError: " + NEVER),
        _dead(unknown, "x" * 600, "{}", name, f"no handler for kind '{'x' * 600}'"[:500]),
    ]
    dead_at = int(dead[0][0].split("-")[0]) / 1000  # no pause after the last attempt
    assert dead_at - last_try < 0.05


def _dead(message_id: str, kind: str, body: str, name: str, error: str) -> dict[str, str]:
    source = stream(name, "normal", 1)  # key "r"
    return {"id": message_id, "kind": kind, "key": "r", "body": body, "error": error} | {
        "source": source,
        "attempts": "3",
    }


async def test_a_long_job_keeps_its_partition_from_a_second_worker(
    queue: Queue, workers: Spawn, redis_client: aioredis.Redis
) -> None:
    first = workers("w1")
    assert await first.ready_line() == "worker w1 ready, partitions [0, 1, 2, 3]"
    second = workers("w2")
    assert await second.ready_line() == "worker w2 ready, partitions []"
    job = await queue.publish("slow", {"value": "once"}, key="L")  # 1 s: past the lease
    holders: set[Any] = set()

    async def finished() -> bool:
        holders.add(await redis_client.get(f"mq:{queue.name}:lease:2"))  # "L": partition 2
        return bool(await log_of(redis_client, queue.name, "L"))

    await eventually(finished, 5, interval=0.02)
    done_at = time.time()
    tries = await tries_of(redis_client, queue.name, job)
    assert [(w, a) for w, a, _ in tries] == [("w1", 1)]  # the second worker never ran it
    assert holders == {"w1"}
    assert 1.0 <= done_at - tries[0][2] < 1.5
    assert (second.stop(), first.stop()) == (0, 0)  # a clean stop on SIGTERM


async def test_a_dead_workers_job_passes_to_its_heir_in_order(
    queue: Queue, workers: Spawn, redis_client: aioredis.Redis
) -> None:
    doomed = workers("doomed")
    assert await doomed.ready_line() == "worker doomed ready, partitions [0, 1, 2, 3]"
    heir = workers("heir")
    assert await heir.ready_line() == "worker heir ready, partitions []"
    job = await queue.publish("slow", {"value": "survived", "seconds": 0.8}, key="d")

    async def started() -> bool:
        return bool(await tries_of(redis_client, queue.name, job))

    await eventually(started, 5, interval=0.005)
    doomed.kill()  # mid-job: the message stays pending, unacknowledged
    killed_at = time.time()
    await queue.publish("record", {"value": "next"}, key="d")
    assert await log_reaches(redis_client, queue.name, "d", 2, timeout=5) == ["survived", "next"]
    tries = await tries_of(redis_client, queue.name, job)
    assert [(w, a) for w, a, _ in tries] == [("doomed", 1), ("heir", 1)]
    assert tries[1][2] - killed_at < LEASE_MS / 1000 + 0.3  # once the lease ran out
    assert heir.stop() == 0


async def test_an_unknown_priority_is_refused(queue: Queue) -> None:
    with pytest.raises(ValueError, match=r"^priority must be one of \('high', 'normal', 'low'\)$"):
        await queue.publish("record", {}, key="k", priority="urgent")


def test_a_worker_needs_a_queue_and_a_consumer() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "apex.worker"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "the following arguments are required: --queue, --consumer" in done.stderr
