"""The backend service (Starlette): agent runs streamed as NDJSON, threads, sessions, credits."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from apex.access import check_access
from apex.backend.agents import DeterministicProvider
from apex.backend.ledger import Ledger
from apex.backend.store import Store
from apex.backend.supervisor import Request as AgentRequest
from apex.backend.supervisor import Supervisor
from apex.cachechain import write_price
from apex.discovery import resolve
from apex.internal import service_only, session_routes
from apex.metrics_agg import Aggregator
from apex.mq import Queue, Worker
from apex.node import Node
from apex.ratelimit import UserRateLimit, WindowLimiter
from apex.service import error, make_app, make_redis, redis_check
from apex.sessions import SessionCache, SessionStore
from apex.settings import Settings
from apex.tls import tls
from apex.tokens import Claims, TokenError, bearer
from apex.worker import handlers

MAX_AGENT_TIMEOUT = 30.0
HEARTBEAT_PERIOD = 1.0  # discovery's interval plus its readiness-check timeout
Authed = Callable[[Request, Claims], Awaitable[Response]]


class BadBody(Exception):
    """The request body is not a JSON object."""


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadBody from None
    if not isinstance(body, dict):
        raise BadBody
    return body


class BackendApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = make_redis(settings.redis_url, settings.redis_timeout)
        self.sessions = SessionStore(self.redis)
        self.cache = SessionCache(self.sessions)
        self.store = Store(Path(settings.data_dir) / "backend.db")
        self.supervisor = Supervisor(self.store, DeterministicProvider())
        self.ledger = Ledger(self.store, self.redis)
        self.http = httpx.AsyncClient(verify=tls(), timeout=2.0)
        self.aggregator = Aggregator(self.redis, self.http)
        self.jobs = Queue(self.redis, "jobs")
        self.tasks: list[asyncio.Task[None]] = []
        self.job_worker = Worker(self.jobs, f"backend-{os.getpid()}", handlers(self.jobs))
        self.worker: asyncio.Task[None] | None = None
        self.timeout_from_env = bool(os.environ.get("APEX_AGENT_TIMEOUT"))
        self.node = Node(
            "backend",
            settings,
            self.redis,
            {
                "redis": redis_check(self.redis),
                "sqlite": self.store_ok,
                "jobs_worker": self.worker_ok,
            },
        )

    def authed(self, handler: Authed) -> Callable[[Request], Awaitable[Response]]:
        """401 unless a valid, unrevoked access token comes with the request; 400 on bad JSON."""

        async def wrapped(request: Request) -> Response:
            try:
                token = bearer(request.headers.get("authorization"))
                claims = await check_access(self.redis, self.settings.jwt_secret, token)
                return await handler(request, claims)
            except TokenError as exc:
                return error(401, str(exc))
            except BadBody:
                return error(400, "the body must be a JSON object")

        return wrapped

    async def run_agent(self, request: Request, claims: Claims) -> Response:
        body = await json_object(request)
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            return error(422, "content must be a non-empty string")
        req = self._agent_request(claims, content, body)
        return StreamingResponse(self._stream(req), media_type="application/x-ndjson")

    def _agent_request(self, claims: Claims, content: str, body: dict[str, Any]) -> AgentRequest:
        raw = body.get("options")
        options: dict[str, Any] = raw if isinstance(raw, dict) else {}
        faults = options.get("faults", {}) if self.settings.fault_injection else {}
        default = self._default_timeout()
        timeout = options.get("agent_timeout", default)
        if not isinstance(timeout, int | float) or not 0.01 <= timeout <= MAX_AGENT_TIMEOUT:
            timeout = default
        thread_id = body.get("thread_id")
        return AgentRequest(
            user_id=claims.sub,
            content=content,
            thread_id=thread_id if isinstance(thread_id, str) else None,
            faults=faults if isinstance(faults, dict) else {},
            agent_timeout=float(timeout),
            stream_chunk=_bounded(options.get("stream_chunk"), 0, 10_000),
            repeat=_bounded(options.get("repeat"), 1, 200),
        )

    def _default_timeout(self) -> float:
        """A published change, else APEX_AGENT_TIMEOUT where it is set, else the layered
        configuration (defaults < APEX_CONFIG_FILE < APEX_CFG_ variables)."""
        config = self.node.config
        if config is not None and (config.version or not self.timeout_from_env):
            return float(config.config.agent_timeout)
        return self.settings.agent_timeout

    async def _stream(self, req: AgentRequest) -> AsyncIterator[bytes]:
        # bounded: a slow reader pauses the agents instead of growing this queue
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=64)

        async def emit(kind: str, payload: dict[str, Any]) -> None:
            await queue.put({"type": kind, "payload": payload})

        async def work() -> None:
            try:
                await self.supervisor.handle(req, emit)
            except Exception as exc:  # the client must hear about it, not hang
                await emit("agent_error", {"agent": "supervisor", "error": str(exc)})
            finally:
                await queue.put(None)

        task = asyncio.create_task(work())
        try:
            while (event := await queue.get()) is not None:
                yield (json.dumps(event) + "\n").encode()
        finally:
            task.cancel()

    async def threads(self, request: Request, claims: Claims) -> Response:
        return JSONResponse({"threads": await asyncio.to_thread(self.store.threads, claims.sub)})

    async def messages(self, request: Request, claims: Claims) -> Response:
        thread_id = request.path_params["thread_id"]
        if await asyncio.to_thread(self.store.owner, thread_id) != claims.sub:
            return error(404, "no such thread")  # another user's thread does not exist for you
        return JSONResponse(
            {
                "thread_id": thread_id,
                "messages": await asyncio.to_thread(self.store.messages, thread_id),
            }
        )

    async def run_view(self, request: Request, claims: Claims) -> Response:
        runs = await asyncio.to_thread(
            self.store.run_tree, request.path_params["run_id"], claims.sub
        )
        return JSONResponse({"runs": runs}) if runs else error(404, "no such run")

    async def update_session(self, request: Request, claims: Claims) -> Response:
        changes = await json_object(request)
        if "user_id" in changes:
            return error(422, "send a JSON object of session data (user_id is read-only)")
        session = await self.sessions.update(claims.sid, changes)
        return JSONResponse(session) if session else error(404, "session ended")

    async def buy_credits(self, request: Request, claims: Claims) -> Response:
        """Atomic from the user's view: the answer comes once SQLite and Redis both agree."""
        body = await json_object(request)
        amount, key = body.get("amount"), body.get("idempotency_key")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= 10**6:
            return error(422, "amount must be a whole number from 1 to 1,000,000")
        if not isinstance(key, str) or not 0 < len(key) <= 128:
            return error(422, "idempotency_key must be a string of 1 to 128 characters")
        ledger_id, created = await asyncio.to_thread(self.ledger.record, claims.sub, amount, key)
        if self.settings.fault_injection and body.get("crash_after_commit"):
            os._exit(70)  # fault injection: die between the SQLite commit and the Redis write
        await self.ledger.relay()
        balances = await self.ledger.balances(claims.sub)
        return JSONResponse(
            {"ledger_id": ledger_id, "created": created, **balances},
            status_code=201 if created else 200,
        )

    async def credits(self, request: Request, claims: Claims) -> Response:
        return JSONResponse(await self.ledger.balances(claims.sub))

    async def admin_overview(self, request: Request, claims: Claims) -> Response:
        """Admins only: a user's token without the role gets 403, not the data."""
        if "admin" not in claims.roles:
            return error(403, "the admin role is required")
        counts = await asyncio.to_thread(
            self.store.query,
            "SELECT (SELECT COUNT(*) FROM threads), (SELECT COUNT(*) FROM agent_runs)",
        )
        return JSONResponse({"threads": counts[0][0], "agent_runs": counts[0][1]})

    async def set_price(self, request: Request, claims: Claims) -> Response:
        """Admins change a catalog price; the answer waits until every service invalidated."""
        if "admin" not in claims.roles:
            return error(403, "the admin role is required")
        price = (await json_object(request)).get("price")
        if not isinstance(price, int | float) or isinstance(price, bool) or not 0 <= price < 1e9:
            return error(422, "price must be a non-negative number")
        started = time.time()
        expected = {r["instance"] for r in await resolve(self.redis)}
        result = await write_price(self.redis, request.path_params["model"], float(price), expected)
        if result["missing"]:  # a killed instance's record outlives it until its TTL ends
            await asyncio.sleep(HEARTBEAT_PERIOD)  # every live instance beats in this time
            alive = {
                r["instance"] for r in await resolve(self.redis) if r["heartbeat_at"] >= started
            }
            result["presumed_dead"] = sorted(set(result["missing"]) - alive)
            result["missing"] = sorted(set(result["missing"]) & alive)
        return JSONResponse(result, status_code=200 if not result["missing"] else 504)

    async def put_config(self, request: Request) -> Response:
        """Publish a configuration change to every service (service token); 422 keeps the old."""
        from apex.runtime_config import ConfigError, public, publish  # noqa: PLC0415

        view = self.node.config
        if view is None:
            return error(503, "the configuration is still loading", retry_after_s=1)
        try:
            version, config = await publish(self.redis, view.config, await json_object(request))
        except BadBody:
            return error(400, "the body must be a JSON object")
        except ConfigError as exc:
            return error(422, f"invalid configuration: {exc}", version_in_force=view.version)
        return JSONResponse({"version": version, "config": public(config)})

    async def metrics_summary(self, request: Request) -> Response:
        return JSONResponse(await self.aggregator.summary())

    async def store_ok(self) -> bool:
        rows = await asyncio.to_thread(self.store.query, "SELECT 1")
        return rows == [(1,)]

    async def worker_ok(self) -> bool:
        """The job worker runs (it waits Redis errors out; anything else would end it)."""
        return self.worker is not None and not self.worker.done()

    async def start(self) -> None:
        await self.cache.start()
        await self.jobs.setup()
        self.worker = asyncio.create_task(self.job_worker.run())
        self.tasks = [
            asyncio.create_task(c)
            for c in (
                self.ledger.run_relay(),  # also recovers what a crash left in the outbox
                self.aggregator.run(),
            )
        ]
        self.tasks.append(self.worker)
        await self.node.start()  # its first heartbeat runs the checks, the worker's too

    async def stop(self) -> None:
        self.job_worker.stop()  # a cancellation alone may be swallowed by the Redis client
        for task in self.tasks:
            task.cancel()
        await self.http.aclose()
        await self.node.stop()
        await self.cache.stop()
        await self.redis.aclose()

    def routes(self) -> list[Route]:
        a, secret = self.authed, self.settings.jwt_secret
        return [
            Route("/api/agent/run", a(self.run_agent), methods=["POST"]),
            Route("/api/threads", a(self.threads)),
            Route("/api/threads/{thread_id}/messages", a(self.messages)),
            Route("/api/runs/{run_id}", a(self.run_view)),
            Route("/api/session", a(self.update_session), methods=["PATCH"]),
            Route("/api/credits", a(self.buy_credits), methods=["POST"]),
            Route("/api/credits", a(self.credits), methods=["GET"]),
            Route("/api/admin/overview", a(self.admin_overview)),
            Route("/api/catalog/{model}", a(self.set_price), methods=["PUT"]),
            Route("/internal/config", service_only(secret, self.put_config), methods=["PUT"]),
            Route("/internal/metrics/summary", service_only(secret, self.metrics_summary)),
            *session_routes(self.cache, self.settings.jwt_secret),
            *self.node.routes(),
        ]


def _bounded(value: Any, low: int, high: int) -> int:
    return value if isinstance(value, int) and low <= value <= high else low


def create_app(settings: Settings | None = None) -> Starlette:
    state = BackendApp(settings or Settings.from_env())
    limiter = WindowLimiter(
        state.redis, "http-user", state.settings.http_rate, state.settings.http_window
    )
    rate_limit = Middleware(UserRateLimit, limiter=limiter, secret=state.settings.jwt_secret)
    return make_app(state, state.routes(), [*state.node.middleware(), rate_limit])
