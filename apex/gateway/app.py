"""The gateway service: `/ws` (token in the Authorization header or a `jwt.` subprotocol)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from apex.access import check_access
from apex.gateway.connection import POLICY_VIOLATION, Connection, parse_frame
from apex.service import error, health_routes, make_redis, redis_check
from apex.sessions import SessionCache, SessionStore
from apex.settings import Settings
from apex.tokens import TokenError, bearer

QUERY_TOKEN_KEYS = ("token", "access_token", "jwt", "auth")


def handshake_token(ws: WebSocket) -> tuple[str, str | None]:
    """(token, subprotocol to accept); a token in the query string is refused."""
    if any(k in ws.query_params for k in QUERY_TOKEN_KEYS):
        raise TokenError("tokens in the query string are refused (they end up in logs)")
    offered = ws.scope.get("subprotocols", [])
    for proto in offered:
        if proto.startswith("jwt.") and len(proto) > 4:
            chosen = "apex.v1" if "apex.v1" in offered else proto
            return proto[4:], chosen
    return bearer(ws.headers.get("authorization")), None


class GatewayApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = make_redis(settings.redis_url)
        self.cache = SessionCache(SessionStore(self.redis))
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=1.0))
        self.connections: dict[str, Connection] = {}

    async def websocket(self, ws: WebSocket) -> None:
        try:
            token, proto = handshake_token(ws)
        except TokenError as exc:
            await ws.accept()
            await ws.close(code=POLICY_VIOLATION, reason=str(exc)[:120])
            return
        await ws.accept(subprotocol=proto)
        try:
            claims = await check_access(self.redis, self.settings.jwt_secret, token)
        except TokenError as exc:
            await ws.close(code=POLICY_VIOLATION, reason=str(exc)[:120])
            return
        conn = Connection(ws, claims, token)
        self.connections[conn.id] = conn
        try:
            await self._serve(conn)
        finally:
            self.connections.pop(conn.id, None)
            conn.cancel_run()

    async def _serve(self, conn: Connection) -> None:
        session = await self.cache.get(conn.claims.sid)
        await conn.send(
            "connection_established",
            connection_id=conn.id,
            user_id=conn.claims.sub,
            session_id=conn.claims.sid,
            session_version=session["version"] if session else None,
        )
        with contextlib.suppress(WebSocketDisconnect):
            while not conn.closed:
                await self._dispatch(conn, await conn.ws.receive_text())

    async def _dispatch(self, conn: Connection, text: str) -> None:
        parsed = parse_frame(text)
        if isinstance(parsed, str):
            await conn.send("error", code=parsed, message="send JSON {type, payload}")
            return
        kind, payload = parsed
        handler = getattr(self, "_on_" + kind, None)
        if handler is None:
            await conn.send("error", code="unknown_type", message=f"unknown type {kind!r}")
            return
        await handler(conn, payload)

    async def _on_ping(self, conn: Connection, payload: dict[str, Any]) -> None:
        await conn.send("pong", **payload)

    async def _on_user_message(self, conn: Connection, payload: dict[str, Any]) -> None:
        content = payload.get("content")
        if not isinstance(content, str) or not content.strip():
            await conn.send("error", code="invalid_payload", message="payload.content is needed")
            return
        if conn.run is not None and not conn.run.done():
            await conn.send("error", code="busy", message="an agent run is already in progress")
            return
        conn.run = asyncio.create_task(self._relay(conn, payload))

    _on_start_agent = _on_user_message

    async def _on_stop_agent(self, conn: Connection, payload: dict[str, Any]) -> None:
        if conn.cancel_run():
            await conn.send(
                "agent_error", agent="supervisor", state="failed", error="stopped by the user"
            )
        else:
            await conn.send("error", code="no_run", message="no agent run is in progress")

    async def _relay(self, conn: Connection, payload: dict[str, Any]) -> None:
        """Stream the backend's NDJSON events to the client as frames, in order."""
        body = {k: payload[k] for k in ("content", "thread_id", "options") if k in payload}
        headers = {"authorization": f"Bearer {conn.token}"}
        try:
            async with self.http.stream(
                "POST", f"{self.settings.backend_url}/api/agent/run", json=body, headers=headers
            ) as resp:
                if resp.status_code != 200:
                    await conn.send(
                        "error",
                        code=f"backend_{resp.status_code}",
                        message=(await resp.aread()).decode()[:200],
                    )
                    return
                async for line in resp.aiter_lines():
                    if line:
                        await conn.send_raw(line)
        except httpx.HTTPError as exc:
            await conn.send(
                "error",
                code="backend_unavailable",
                message=f"the agent service is unavailable ({type(exc).__name__})",
            )

    async def on_session_event(self, event: dict[str, Any]) -> None:
        for conn in list(self.connections.values()):
            if conn.claims.sid != event["sid"]:
                continue
            if event["kind"] == "deleted":
                await conn.send("error", code="session_ended", message=event.get("reason", ""))
                await conn.close(POLICY_VIOLATION, "session ended")
            else:
                session = event["session"]
                await conn.send("session_updated", version=session["version"], data=session["data"])

    async def backend_ok(self) -> bool:
        resp = await self.http.get(f"{self.settings.backend_url}/health", timeout=0.5)
        return resp.status_code == 200

    async def auth_ok(self) -> bool:
        resp = await self.http.get(f"{self.settings.auth_url}/health", timeout=0.5)
        return resp.status_code == 200

    async def session_view(self, request: Request) -> Response:
        session = await self.cache.get(request.path_params["sid"])
        return JSONResponse(session) if session else error(404, "no such session")

    def routes(self) -> list[Route | WebSocketRoute]:
        return [
            WebSocketRoute("/ws", self.websocket),
            Route("/internal/sessions/{sid}", self.session_view),
            *health_routes(
                "gateway",
                {
                    "redis": redis_check(self.redis),
                    "backend": self.backend_ok,
                    "auth": self.auth_ok,
                },
            ),
        ]


def create_app(settings: Settings | None = None) -> Starlette:
    state = GatewayApp(settings or Settings.from_env())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.cache.start()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        state.cache.listeners.append(queue)
        pump = asyncio.create_task(_pump(queue, state))
        yield
        pump.cancel()
        await state.cache.stop()
        await state.http.aclose()
        await state.redis.aclose()

    app = Starlette(routes=state.routes(), lifespan=lifespan)
    app.state.apex = state
    return app


async def _pump(queue: asyncio.Queue[dict[str, Any]], state: GatewayApp) -> None:
    while True:
        event = await queue.get()
        with contextlib.suppress(Exception):
            await state.on_session_event(event)
