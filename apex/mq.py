"""A message queue on Redis Streams with consumer groups.

- Partitions: a message's key picks its partition; one worker at a time holds a partition
  (a lease in Redis), so messages of one key are handled in order.
- Priorities: each partition has a high, normal and low stream, read in that order.
- At-least-once with idempotent handling: a handler queues its effects on a transaction
  that also marks the message done and acknowledges it, so an effect happens exactly once
  even when a message is delivered twice.
- Retries with exponential backoff; after `max_attempts` a message goes to the dead-letter
  stream. A worker that dies leaves its partitions' leases to expire; the next holder first
  claims the messages it left pending. A worker renews the lease of the partition whose
  message it handles while the handler runs, so no other worker takes over a long job.
- A worker outlives Redis errors (a stalled or restarted Redis): it tries again.
"""

import asyncio
import contextlib
import json
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

PRIORITIES = ("high", "normal", "low")
GROUP = "workers"
Handler = Callable[[dict[str, Any], Pipeline], Awaitable[None]]

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class Queue:
    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        partitions: int = 4,
        max_attempts: int = 3,
        backoff: float = 0.05,
    ) -> None:
        self.redis, self.name, self.partitions = client, name, partitions
        self.max_attempts, self.backoff = max_attempts, backoff
        self.dead = f"mq:{name}:dead"
        self.done = f"mq:{name}:done"

    def stream(self, priority: str, partition: int) -> str:
        return f"mq:{self.name}:{priority}:{partition}"

    def partition(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    async def setup(self) -> None:
        for priority in PRIORITIES:
            for part in range(self.partitions):
                try:
                    await self.redis.xgroup_create(
                        self.stream(priority, part), GROUP, id="0", mkstream=True
                    )
                except aioredis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    async def publish(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        key: str,
        priority: str = "normal",
        message_id: str | None = None,
    ) -> str:
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}")
        fields = {
            "id": message_id or uuid.uuid4().hex,
            "kind": kind,
            "key": key,
            "body": json.dumps(body),
        }
        await self.redis.xadd(self.stream(priority, self.partition(key)), fields)  # type: ignore[arg-type]
        return fields["id"]


class Worker:
    def __init__(
        self, queue: Queue, consumer: str, handlers: dict[str, Handler], lease_ms: int = 2000
    ) -> None:
        self.q, self.consumer, self.handlers, self.lease_ms = queue, consumer, handlers, lease_ms
        self.owned: set[int] = set()
        self.stopping = False
        self._renew = queue.redis.register_script(_RENEW)

    async def _lease(self, part: int) -> bool:
        """Take or renew the lease of partition `part`; False while another worker holds it."""
        key = f"mq:{self.q.name}:lease:{part}"
        return bool(await self._renew(keys=[key], args=[self.consumer, self.lease_ms]))

    async def refresh_leases(self) -> None:
        for part in range(self.q.partitions):
            if await self._lease(part):
                self.owned.add(part)
            else:
                self.owned.discard(part)

    async def step(self) -> bool:
        """Handle one message, highest priority first; False when there was nothing to do."""
        await self.refresh_leases()
        for priority in PRIORITIES:
            for part in sorted(self.owned):
                stream = self.q.stream(priority, part)
                message = await self._next(stream)
                if message is not None:
                    keeper = asyncio.create_task(self._keep(part))
                    try:
                        await self._handle(stream, *message)
                    finally:
                        keeper.cancel()
                    return True
        return False

    async def _keep(self, part: int) -> None:
        """Renew the partition's lease while its message is handled (three times a lease)."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            with contextlib.suppress(aioredis.RedisError):
                await self._lease(part)

    async def _next(self, stream: str) -> tuple[str, dict[str, str]] | None:
        """A message a previous holder left pending comes before any new one."""
        reply: Any = await self.q.redis.xautoclaim(
            stream, GROUP, self.consumer, 0, start_id="0-0", count=1
        )
        claimed = reply[1]
        if claimed:
            return str(claimed[0][0]), dict(claimed[0][1])
        fresh: Any = await self.q.redis.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=1)
        if not fresh or not fresh[0][1]:
            return None
        msg_id, fields = fresh[0][1][0]
        return str(msg_id), dict(fields)

    async def _handle(self, stream: str, msg_id: str, fields: dict[str, str]) -> None:
        if await self.q.redis.sismember(self.q.done, fields["id"]):
            await self.q.redis.xack(stream, GROUP, msg_id)  # delivered twice: done already
            return
        message = {**fields, "body": json.loads(fields["body"])}
        error = ""
        for attempt in range(1, self.q.max_attempts + 1):
            error = await self._attempt(stream, msg_id, message, attempt)
            if not error:
                return
            if attempt < self.q.max_attempts:  # no pause after the last one
                await asyncio.sleep(self.q.backoff * 2 ** (attempt - 1))
        await self._dead_letter(stream, msg_id, fields, error)

    async def _attempt(
        self, stream: str, msg_id: str, message: dict[str, Any], attempt: int
    ) -> str:
        handler = self.handlers.get(message["kind"])
        if handler is None:
            return f"no handler for kind {message['kind']!r}"
        tx = self.q.redis.pipeline(transaction=True)
        try:
            await handler({**message, "attempt": attempt, "consumer": self.consumer}, tx)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        tx.sadd(self.q.done, message["id"])
        tx.xack(stream, GROUP, msg_id)
        await tx.execute()
        return ""

    async def _dead_letter(
        self, stream: str, msg_id: str, fields: dict[str, str], error: str
    ) -> None:
        tx = self.q.redis.pipeline(transaction=True)
        dead: dict[Any, Any] = {
            **fields,
            "error": error[:500],
            "source": stream,
            "attempts": self.q.max_attempts,
        }
        tx.xadd(self.q.dead, dead)
        tx.xack(stream, GROUP, msg_id)
        await tx.execute()

    def stop(self) -> None:
        """End `run` after the message at hand. (Cancelling `run` is not enough to stop it:
        the Redis client can swallow a cancellation that lands inside one of its calls.)"""
        self.stopping = True

    async def run(self, idle: float = 0.05) -> None:
        """Handle messages until stopped; a Redis error is waited out, never fatal."""
        while not self.stopping:
            try:
                if await self.step():
                    continue
            except aioredis.RedisError:
                pass  # Redis stalled, restarting or away: try again after a pause
            await asyncio.sleep(idle)
