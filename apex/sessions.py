"""Sessions shared by every service through Redis, with pub/sub so caches never go stale.

A session is one JSON value under `session:{id}` with a version that every update bumps
atomically (a Lua script), so concurrent updates never lose each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

CHANNEL = "apex:session-events"
EXPIRED_PATTERN = "__keyevent@*__:expired"

_UPDATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local s = cjson.decode(raw)
local changes = cjson.decode(ARGV[1])
for k, v in pairs(changes) do s['data'][k] = v end
s['version'] = s['version'] + 1
s['updated_at'] = tonumber(ARGV[2])
local out = cjson.encode(s)
redis.call('SET', KEYS[1], out, 'KEEPTTL')
redis.call('PUBLISH', ARGV[3], cjson.encode({sid = s['sid'], version = s['version'],
  kind = 'updated', session = s}))
return out
"""


def session_key(sid: str) -> str:
    return f"session:{sid}"


class SessionStore:
    """Create, read, update and delete sessions; every change is published."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._update = client.register_script(_UPDATE)

    async def create(self, *, user_id: str, email: str, ttl: int) -> dict[str, Any]:
        now = time.time()
        session: dict[str, Any] = {
            "sid": secrets.token_urlsafe(16),
            "user_id": user_id,
            "email": email,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "data": {"user_id": user_id},
        }
        await self.redis.set(session_key(session["sid"]), json.dumps(session), ex=ttl)
        return session

    async def get(self, sid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(session_key(sid))
        return json.loads(raw) if raw else None

    async def update(self, sid: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        raw = await self._update(
            keys=[session_key(sid)], args=[json.dumps(changes), time.time(), CHANNEL]
        )
        return json.loads(raw) if raw else None

    async def delete(self, sid: str, reason: str = "logout") -> bool:
        removed = await self.redis.delete(session_key(sid))
        await self.redis.publish(
            CHANNEL, json.dumps({"sid": sid, "kind": "deleted", "reason": reason})
        )
        return bool(removed)


class SessionCache:
    """A service's local view of sessions, kept fresh by the pub/sub channel."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.entries: dict[str, dict[str, Any]] = {}
        self.seen_at: dict[str, float] = {}
        self.listeners: list[asyncio.Queue[dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(Exception):  # a managed Redis may refuse CONFIG
            await self.store.redis.config_set("notify-keyspace-events", "Ex")
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def get(self, sid: str) -> dict[str, Any] | None:
        if sid not in self.entries:
            session = await self.store.get(sid)
            if session is None:
                return None
            self.entries[sid] = session
        return self.entries[sid]

    async def _follow(self) -> None:
        """Listen for changes; if the subscription breaks, forget everything and resubscribe."""
        while True:
            try:
                async with self.store.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await pubsub.psubscribe(EXPIRED_PATTERN)
                    await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.entries.clear()  # changes may have been missed: re-read on demand
                await asyncio.sleep(0.2)

    async def _listen(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            if message["type"] == "pmessage":
                key = str(message["data"])
                if key.startswith("session:"):
                    self.apply(
                        {"sid": key[len("session:") :], "kind": "deleted", "reason": "expired"}
                    )
            else:
                self.apply(json.loads(message["data"]))

    def apply(self, event: dict[str, Any]) -> None:
        sid = event["sid"]
        self.seen_at[sid] = time.time()
        if event["kind"] == "deleted":
            self.entries.pop(sid, None)
        elif sid not in self.entries or event["version"] > self.entries[sid]["version"]:
            self.entries[sid] = event["session"]
        for queue in self.listeners:
            queue.put_nowait(event)
