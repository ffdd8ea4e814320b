"""Sign-in throttling: after `limit` failed sign-ins for one email within `window` seconds,
that email gets 429 until the window ends, whatever the password.

The count is kept for any email, registered or not, so a throttled answer says nothing
about whether an account exists. Counts live in Redis, shared by every auth process.
"""

from __future__ import annotations

import hashlib
import math

import redis.asyncio as aioredis


def _key(email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"auth:login-failures:{digest}"  # no email address stored in Redis keys


class LoginThrottle:
    def __init__(self, client: aioredis.Redis, limit: int, window: float) -> None:
        self.redis, self.limit, self.window = client, limit, window

    async def wait(self, email: str) -> int:
        """Seconds until `email` may try again; 0 if it may now."""
        key = _key(email)
        count = await self.redis.get(key)
        if count is None or int(count) < self.limit:
            return 0
        ttl_ms = await self.redis.pttl(key)
        return max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else 1

    async def failed(self, email: str) -> None:
        key = _key(email)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, nx=True, px=int(self.window * 1000))  # the window starts once
            pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self.redis.delete(_key(email))
