"""Independent views of the platform's state for the tier-2 suites: Redis and SQLite read
directly (never through the service under test), token claims decoded here, and Redis write
stalls (`CLIENT PAUSE ... WRITE`) that are always lifted."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import jwt
import redis.asyncio as aioredis

from apex.client import Tokens
from apex.launcher import Stack


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, decoded here without the platform's code (no signature check)."""
    return dict(jwt.decode(token, options={"verify_signature": False}))


def user_id(tokens: Tokens) -> str:
    return str(claims(tokens.access)["sub"])


@contextlib.asynccontextmanager
async def redis_of(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    """A client of the stack's Redis of our own (short timeouts: a stall fails, not hangs)."""
    client = aioredis.Redis.from_url(
        stack.redis_url, decode_responses=True, socket_timeout=5.0, socket_connect_timeout=2.0
    )
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def writes_paused(client: aioredis.Redis, seconds: float) -> AsyncIterator[None]:
    """Every client's writes to Redis stall (reads still answer) for the block, lifted at
    the end whatever happens; `seconds` bounds the pause even if the lifting is lost."""
    await client.client_pause(int(seconds * 1000), all=False)
    try:
        yield
    finally:
        await client.client_unpause()


def _query(stack: Stack, database: str, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    path = stack.workdir / database
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return list(db.execute(sql, args).fetchall())


async def sqlite_rows(
    stack: Stack, sql: str, args: tuple[Any, ...] = (), database: str = "backend.db"
) -> list[tuple[Any, ...]]:
    """Rows read from a service's SQLite file by a connection of our own (read-only)."""
    return await asyncio.to_thread(_query, stack, database, sql, args)


def _execute(stack: Stack, database: str, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(stack.workdir / database, timeout=5)) as db:
        db.executescript(sql)


async def sqlite_script(stack: Stack, sql: str, database: str = "backend.db") -> None:
    """Change a service's SQLite file behind its back (fault injection: a trigger)."""
    await asyncio.to_thread(_execute, stack, database, sql)


async def failed_calls(client: aioredis.Redis, command: str) -> int:
    """How many `command` calls Redis has refused so far (scripts' calls included)."""
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("failed_calls", 0))
