"""What every Apex HTTP service shares: health routes, JSON errors and the uvicorn entry."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Check = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT = 0.5


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _run_check(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception:
        return False


async def run_checks(checks: dict[str, Check]) -> dict[str, bool]:
    """Every check at once, each bounded by CHECK_TIMEOUT: a stalled dependency is False."""
    names = list(checks)
    results = await asyncio.gather(*(_run_check(checks[n]) for n in names))
    return dict(zip(names, results, strict=True))


def health_routes(name: str, checks: dict[str, Check]) -> list[Route]:
    """`/health` (the process answers) and `/health/ready` (its dependencies answer too)."""
    started = time.time()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "service": name, "uptime_s": round(time.time() - started, 3)}
        )

    async def ready(request: Request) -> JSONResponse:
        state = await run_checks(checks)
        ok = all(state.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "service": name, "checks": state},
            status_code=200 if ok else 503,
        )

    return [Route("/health", health), Route("/health/ready", ready)]


async def _dependency_down(request: Request, exc: Exception) -> Response:
    return error(503, "a dependency is unavailable; try again shortly", retry_after_s=1)


# A stalled or dead Redis is a 503 the client can retry, never a 500 with a traceback.
EXCEPTION_HANDLERS: dict[Any, Any] = {
    aioredis.RedisError: _dependency_down,
    TimeoutError: _dependency_down,
}


class Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def make_app(state: Lifecycle, routes: list[Any], middleware: list[Middleware]) -> Starlette:
    """A Starlette app whose lifespan starts and stops `state`; Redis failures become 503."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=middleware,
    )
    app.state.apex = state
    return app


def redis_check(client: aioredis.Redis) -> Check:
    async def ping() -> bool:
        return bool(await client.ping())

    return ping


def make_redis(url: str, timeout: float) -> aioredis.Redis:
    """A client whose pool is bounded: a burst of requests waits for a connection instead of
    opening hundreds at once (which times out connects on a small machine). A command that
    takes longer than `timeout` seconds fails: a stalled Redis is an error, not a hang."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=5.0,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=timeout,
        health_check_interval=5,
    )
    return aioredis.Redis(connection_pool=pool)


def serve(app: Any, fd: int) -> None:
    """Serve `app` on an inherited listening socket (the launcher keeps the port)."""
    import uvicorn  # noqa: PLC0415 - only service processes need it

    # socket(fileno=) detects AF_INET; socket.fromfd(.., AF_UNIX) as uvicorn's --fd does
    # would make asyncio skip TCP_NODELAY and add ~40 ms to every WebSocket reply.
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app,
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])
