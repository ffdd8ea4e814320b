"""Rate limits: a token bucket per connection (in memory) and a window per user (Redis)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from apex.tokens import ACCESS, TokenError, bearer, verify


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one will be available."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class WindowLimiter:
    """At most `limit` hits per `window` seconds per key, shared by every process (Redis)."""

    def __init__(self, client: aioredis.Redis, prefix: str, limit: int, window: float) -> None:
        self.redis, self.prefix, self.limit, self.window = client, prefix, limit, window

    async def hit(self, key: str) -> float:
        """0 if allowed, else seconds until the window resets."""
        slot = math.floor(time.time() / self.window)
        name = f"rl:{self.prefix}:{key}:{slot}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.pexpire(name, int(self.window * 1000) + 1000)
            count, _ = await pipe.execute()
        if int(count) <= self.limit:
            return 0.0
        return max(0.001, (slot + 1) * self.window - time.time())


async def frame_refusal(
    bucket: TokenBucket, users: WindowLimiter, user: str
) -> dict[str, Any] | None:
    """The `rate_limited` answer to a WebSocket frame over its connection's bucket or its
    user's window (in that order: a frame the bucket refuses does not count for the user),
    or None when the frame may pass."""
    wait = bucket.take() or await users.hit(user)
    if not wait:
        return None
    retry_ms = max(1, round(wait * 1000))
    return {"code": "rate_limited", "message": "slow down", "retry_after_ms": retry_ms}


class UserRateLimit:
    """ASGI middleware: per-user HTTP limit on `prefix` routes, 429 with Retry-After."""

    def __init__(
        self, app: Any, limiter: WindowLimiter, secret: str, prefix: str = "/api/"
    ) -> None:
        self.app, self.limiter, self.secret, self.prefix = app, limiter, secret, prefix

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        user = self._user(scope) if scope["type"] == "http" else None
        try:
            wait = await self.limiter.hit(user) if user else 0.0
        except aioredis.RedisError:
            wait = 0.0  # fail open: the route answers 503 itself if Redis is really gone
        if not wait:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"error": "rate limited", "retry_after_s": round(wait, 3)},
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
        await response(scope, receive, send)

    def _user(self, scope: Any) -> str | None:
        if not str(scope.get("path", "")).startswith(self.prefix):
            return None
        try:  # the route itself answers bad tokens; the limit needs only who it is
            header = Headers(scope=scope).get("authorization")
            return verify(self.secret, bearer(header), token_type=ACCESS).sub
        except TokenError:
            return None
