"""Real queue workers (`python -m apex.worker`) for the message-queue suite, and readers of
what they leave in Redis. Stream and key names are spelled out here, not imported from
apex.mq: they are the queue's contract with its producers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from suites.platform import eventually

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class WorkerProcess:
    """One worker process; its output goes to a file (no pipe to block on)."""

    def __init__(self, redis_url: str, queue: str, consumer: str, workdir: Path) -> None:
        self.redis_url, self.queue, self.consumer = redis_url, queue, consumer
        self.log = workdir / f"worker-{consumer}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, lease_ms: int) -> None:
        args = ["--queue", self.queue, "--consumer", self.consumer, "--redis", self.redis_url]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apex.worker", *args, "--lease-ms", str(lease_ms)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def ready_line(self) -> str:
        """The worker's `ready` line, within READY_TIMEOUT seconds (AssertionError if not)."""

        async def said_ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            return "ready" in self.output()

        await eventually(said_ready, READY_TIMEOUT, interval=0.02)
        return self.output().splitlines()[0]

    def kill(self) -> None:
        """Die at once, mid-job if need be (SIGKILL): nothing is cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (0 for a clean stop), None if it was not running."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def stream(queue: str, priority: str, partition: int) -> str:
    return f"mq:{queue}:{priority}:{partition}"


async def log_of(client: aioredis.Redis, queue: str, key: str) -> list[str]:
    values: list[Any] = await client.lrange(f"mq:{queue}:log:{key}", 0, -1)
    return [str(v) for v in values]


async def log_reaches(
    client: aioredis.Redis, queue: str, key: str, count: int, timeout: float = 10.0
) -> list[str]:
    """The key's log once it holds `count` entries (AssertionError after `timeout`)."""

    async def full() -> bool:
        return len(await log_of(client, queue, key)) >= count

    await eventually(full, timeout, interval=0.005)
    return await log_of(client, queue, key)


async def tries_of(
    client: aioredis.Redis, queue: str, message_id: str
) -> list[tuple[str, int, float]]:
    """(consumer, attempt, unix time) of every attempt the standard handlers noted."""
    raw: list[Any] = await client.lrange(f"mq:{queue}:tries:{message_id}", 0, -1)
    parsed = [str(entry).split(" ") for entry in raw]
    return [(who, int(attempt), float(at)) for who, attempt, at in parsed]


async def drained(client: aioredis.Redis, queue: str, partitions: range) -> bool:
    """Every message of every stream delivered and acknowledged: nothing more can happen."""
    for priority in ("high", "normal", "low"):
        for part in partitions:
            name = stream(queue, priority, part)
            (group,) = await client.xinfo_groups(name)  # the workers' group, and only it
            last: Any = await client.xrevrange(name, count=1)
            if group["pending"] or (last and last[0][0] != group["last-delivered-id"]):
                return False
    return True


async def forget(client: aioredis.Redis, pattern: str) -> None:
    """Delete the keys a test left behind (its queue's streams, logs, leases)."""
    keys = [k async for k in client.scan_iter(match=pattern, count=500)]
    if keys:
        await client.delete(*keys)


async def pause_redis(client: aioredis.Redis, seconds: float) -> None:
    """Stall every client of this Redis for `seconds` (CLIENT PAUSE ALL): their commands
    wait, and those that wait longer than a socket timeout fail."""
    pause = ("CLIENT", "PAUSE", str(int(seconds * 1000)), "ALL")
    await client.execute_command(*pause)  # type: ignore[no-untyped-call]
    await asyncio.sleep(seconds)
