"""The backend service (Starlette): agent runs streamed as NDJSON, threads, sessions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from apex.access import check_access
from apex.backend.agents import DeterministicProvider
from apex.backend.store import Store
from apex.backend.supervisor import Request as AgentRequest
from apex.backend.supervisor import Supervisor
from apex.service import error, health_routes, make_redis, redis_check
from apex.sessions import SessionCache, SessionStore
from apex.settings import Settings
from apex.tokens import Claims, TokenError, bearer

MAX_AGENT_TIMEOUT = 30.0


class BackendApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = make_redis(settings.redis_url)
        self.sessions = SessionStore(self.redis)
        self.cache = SessionCache(self.sessions)
        self.store = Store(Path(settings.data_dir) / "backend.db")
        self.supervisor = Supervisor(self.store, DeterministicProvider())

    async def claims(self, request: Request) -> Claims:
        token = bearer(request.headers.get("authorization"))
        return await check_access(self.redis, self.settings.jwt_secret, token)

    async def run_agent(self, request: Request) -> Response:
        try:
            claims = await self.claims(request)
            body = await request.json()
        except TokenError as exc:
            return error(401, str(exc))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the body must be JSON")
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, str) or not content.strip():
            return error(422, "content must be a non-empty string")
        req = self._agent_request(claims, content, body)
        return StreamingResponse(self._stream(req), media_type="application/x-ndjson")

    def _agent_request(self, claims: Claims, content: str, body: dict[str, Any]) -> AgentRequest:
        raw = body.get("options")
        options: dict[str, Any] = raw if isinstance(raw, dict) else {}
        faults = options.get("faults", {}) if self.settings.fault_injection else {}
        timeout = options.get("agent_timeout", self.settings.agent_timeout)
        if not isinstance(timeout, int | float) or not 0.01 <= timeout <= MAX_AGENT_TIMEOUT:
            timeout = self.settings.agent_timeout
        thread_id = body.get("thread_id")
        return AgentRequest(
            user_id=claims.sub,
            content=content,
            thread_id=thread_id if isinstance(thread_id, str) else None,
            faults=faults if isinstance(faults, dict) else {},
            agent_timeout=float(timeout),
        )

    async def _stream(self, req: AgentRequest) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

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

    async def threads(self, request: Request) -> Response:
        try:
            claims = await self.claims(request)
        except TokenError as exc:
            return error(401, str(exc))
        return JSONResponse({"threads": await asyncio.to_thread(self.store.threads, claims.sub)})

    async def messages(self, request: Request) -> Response:
        try:
            claims = await self.claims(request)
        except TokenError as exc:
            return error(401, str(exc))
        thread_id = request.path_params["thread_id"]
        if await asyncio.to_thread(self.store.owner, thread_id) != claims.sub:
            return error(404, "no such thread")  # another user's thread does not exist for you
        return JSONResponse(
            {
                "thread_id": thread_id,
                "messages": await asyncio.to_thread(self.store.messages, thread_id),
            }
        )

    async def run_view(self, request: Request) -> Response:
        try:
            await self.claims(request)
        except TokenError as exc:
            return error(401, str(exc))
        runs = await asyncio.to_thread(self.store.run_tree, request.path_params["run_id"])
        return JSONResponse({"runs": runs}) if runs else error(404, "no such run")

    async def update_session(self, request: Request) -> Response:
        try:
            claims = await self.claims(request)
            changes = await request.json()
        except TokenError as exc:
            return error(401, str(exc))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the body must be JSON")
        if not isinstance(changes, dict) or "user_id" in changes:
            return error(422, "send a JSON object of session data (user_id is read-only)")
        session = await self.sessions.update(claims.sid, changes)
        return JSONResponse(session) if session else error(404, "session ended")

    async def session_view(self, request: Request) -> Response:
        session = await self.cache.get(request.path_params["sid"])
        return JSONResponse(session) if session else error(404, "no such session")

    async def store_ok(self) -> bool:
        rows = await asyncio.to_thread(self.store.query, "SELECT 1")
        return rows == [(1,)]

    def routes(self) -> list[Route]:
        return [
            Route("/api/agent/run", self.run_agent, methods=["POST"]),
            Route("/api/threads", self.threads),
            Route("/api/threads/{thread_id}/messages", self.messages),
            Route("/api/runs/{run_id}", self.run_view),
            Route("/api/session", self.update_session, methods=["PATCH"]),
            Route("/internal/sessions/{sid}", self.session_view),
            *health_routes("backend", {"redis": redis_check(self.redis), "sqlite": self.store_ok}),
        ]


def create_app(settings: Settings | None = None) -> Starlette:
    state = BackendApp(settings or Settings.from_env())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.cache.start()
        yield
        await state.cache.stop()
        await state.redis.aclose()

    app = Starlette(routes=state.routes(), lifespan=lifespan)
    app.state.apex = state
    return app
