"""What every Apex service runs besides its own routes: discovery heartbeats, metrics,
the cache invalidation chain and the runtime configuration."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apex.cachechain import ChainCache
from apex.discovery import Discovery
from apex.internal import service_only
from apex.metrics import Metrics, MetricsMiddleware
from apex.service import Check, error, health_routes, run_checks
from apex.settings import Settings

if TYPE_CHECKING:
    from apex.runtime_config import ConfigView


CONFIG_RETRY = 1.0  # seconds between two reads of a configuration file that was invalid


class Node:
    def __init__(
        self, service: str, settings: Settings, client: aioredis.Redis, checks: dict[str, Check]
    ) -> None:
        self.service, self.settings, self.checks = service, settings, checks
        self.metrics = Metrics(service)
        self.discovery = Discovery(
            client, service, settings.self_url, self.ready, settings.discovery_ttl
        )
        self.chain = ChainCache(client, service, self.discovery.instance)
        self.redis = client
        self.config: ConfigView | None = None  # loaded after start-up: pydantic is slow to import
        self.config_error = ""  # why the configuration could not be loaded (yet)
        self.tasks: list[asyncio.Task[None]] = []

    async def ready(self) -> bool:
        return all((await run_checks(self.checks)).values())

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.discovery.beat()  # be resolvable as soon as we answer
        self.tasks = [
            asyncio.create_task(c)
            for c in (self.discovery.run(), self.chain.follow(), self._follow_config())
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.discovery.leave()

    async def _follow_config(self) -> None:
        """Import and layer the configuration in a thread, then follow published changes.
        A configuration file that cannot be read or does not validate is read again every
        second until it does (meanwhile /internal/config says why), instead of leaving the
        service without a configuration for good."""
        module = await asyncio.to_thread(importlib.import_module, "apex.runtime_config")
        file = Path(self.settings.config_file) if self.settings.config_file else None
        while True:
            try:
                base = await asyncio.to_thread(module.layered, file)
                break
            except Exception as exc:  # unreadable, not YAML, or not a valid configuration
                self.config_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(CONFIG_RETRY)
        self.config_error = ""
        self.config = module.ConfigView(self.redis, base)
        await self.config.follow()

    def middleware(self) -> list[Middleware]:
        return [Middleware(MetricsMiddleware, metrics=self.metrics)]

    def routes(self) -> list[Route]:
        guard = self._guard
        return [
            *health_routes(self.service, self.checks),
            *self.metrics.routes(),
            Route("/internal/cache/{key}", guard(self.cache_entry)),
            Route("/internal/cache-log", guard(self.cache_log)),
            Route("/internal/config", guard(self.config_view)),
            Route("/internal/fault", guard(self.fault), methods=["POST"]),
        ]

    def _guard(self, handler: Any) -> Any:
        return service_only(self.settings.jwt_secret, handler)

    async def cache_entry(self, request: Request) -> Response:
        value, cached = await self.chain.get(request.path_params["key"])
        if value is None:
            return error(404, "unknown cache key")
        return JSONResponse(
            {
                "key": request.path_params["key"],
                "value": value,
                "cached": cached,
                "instance": self.discovery.instance,
            }
        )

    async def cache_log(self, request: Request) -> Response:
        return JSONResponse({"instance": self.discovery.instance, "log": list(self.chain.log)})

    async def config_view(self, request: Request) -> Response:
        if self.config is None:
            why = f"the configuration is invalid ({self.config_error})" if self.config_error else ""
            return error(503, why or "the configuration is still loading", retry_after_s=1)
        from apex.runtime_config import public  # noqa: PLC0415 - loaded by now

        return JSONResponse(
            {
                "service": self.service,
                "version": self.config.version,
                "config": public(self.config.config),
            }
        )

    async def fault(self, request: Request) -> Response:
        """Fault injection (tests only): report unhealthy while alive; be a slow subscriber."""
        if not self.settings.fault_injection:
            return error(403, "fault injection is off")
        body = await request.json()
        self.discovery.forced_unhealthy = bool(body.get("unhealthy"))
        self.chain.delay = float(body.get("invalidation_delay_ms", 0)) / 1000
        await self.discovery.beat()
        return JSONResponse(
            {
                "unhealthy": self.discovery.forced_unhealthy,
                "invalidation_delay_ms": self.chain.delay * 1000,
            }
        )
