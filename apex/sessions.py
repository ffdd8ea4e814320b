"""Sessions shared by every service through Redis, with pub/sub so caches never go stale.

A session is one JSON value under `session:{id}` with a version that every update bumps
atomically (a watched transaction), so concurrent updates never lose each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

CHANNEL = "apex:session-events"
EXPIRED_PATTERN = "__keyevent@*__:expired"

UPDATE_TRIES = 200  # optimistic rounds before an update gives up (50 at once need ~50)


def session_key(sid: str) -> str:
    return f"session:{sid}"


class SessionStore:
    """Create, read, update and delete sessions; every change is published."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

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
        """Merge `changes` into the session's data and bump its version, atomically: a
        watched read-modify-write, retried when another update came first. (A Lua script
        would re-encode the values with Redis's cjson, which turns [] into {} and rounds
        numbers past 14 digits.)"""
        for _ in range(UPDATE_TRIES):
            with contextlib.suppress(aioredis.WatchError):
                return await self._try_update(session_key(sid), changes)
            await asyncio.sleep(random.uniform(0, 0.002))  # let the winner through
        raise RuntimeError(f"session {sid}: too many concurrent updates")

    async def _try_update(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            raw = await pipe.get(key)
            if not raw:
                return None
            session: dict[str, Any] = json.loads(raw)
            session["data"].update(changes)
            session["version"] += 1
            session["updated_at"] = time.time()
            event = {"sid": session["sid"], "version": session["version"], "kind": "updated"}
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            pipe.set(key, json.dumps(session), keepttl=True)
            pipe.publish(CHANNEL, json.dumps({**event, "session": session}))
            await pipe.execute()
            return session

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
