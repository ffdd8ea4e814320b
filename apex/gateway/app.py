"""The gateway service: `/ws` (token in the Authorization header or a `jwt.` subprotocol)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from apex.access import check_access
from apex.breaker import CircuitBreaker
from apex.discovery import PeerResolver
from apex.gateway.connection import POLICY_VIOLATION, TRY_AGAIN_LATER, Connection, parse_frame
from apex.gateway.lineage import Lineage, expire, resume
from apex.gateway.relay import Relay
from apex.gateway.session_events import session_event
from apex.internal import service_only, session_routes
from apex.node import Node
from apex.ratelimit import TokenBucket, WindowLimiter, frame_refusal
from apex.service import make_app, make_redis, redis_check
from apex.sessions import SessionCache, SessionStore
from apex.settings import Settings
from apex.tls import tls
from apex.tokens import TokenError, bearer

QUERY_TOKEN_KEYS = ("token", "access_token", "jwt", "auth")
MAX_FRAME_BYTES = 64 * 1024
HEALTH_PROBE_S = 0.5  # a readiness probe's patience


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
        self.redis = make_redis(settings.redis_url, settings.redis_timeout)
        self.cache = SessionCache(SessionStore(self.redis))
        self.http = httpx.AsyncClient(
            verify=tls(), timeout=httpx.Timeout(settings.backend_timeout, connect=1.0)
        )
        self.breaker = CircuitBreaker(
            "backend", settings.breaker_threshold, settings.breaker_cooldown
        )
        self.backends = PeerResolver(self.redis, "backend")  # found by discovery, not by port
        self.relay = Relay(self.http, self.backends, self.breaker)
        self.user_limit = WindowLimiter(self.redis, "ws-user", settings.ws_user_rate, 1.0)
        self.connections: dict[str, Connection] = {}
        self.lineages: dict[str, Lineage] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.node = Node(
            "gateway",
            settings,
            self.redis,
            {"redis": redis_check(self.redis), "backend": self.backend_ok},
        )

    async def websocket(self, ws: WebSocket) -> None:
        conn = await self._handshake(ws)
        if conn is None:
            return
        self.connections[conn.id] = conn
        self.lineages[conn.lineage.id] = conn.lineage
        writer = asyncio.create_task(conn.write_loop())
        try:
            await self._serve(conn)
        finally:
            self.connections.pop(conn.id, None)
            await conn.detach()
            writer.cancel()

    async def _handshake(self, ws: WebSocket) -> Connection | None:
        try:
            token, proto = handshake_token(ws)
        except TokenError as exc:
            await ws.accept()
            await ws.close(code=POLICY_VIOLATION, reason=str(exc)[:120])
            return None
        await ws.accept(subprotocol=proto)
        try:
            claims = await check_access(self.redis, self.settings.jwt_secret, token)
        except TokenError as exc:
            await ws.close(code=POLICY_VIOLATION, reason=str(exc)[:120])
            return None
        except redis.RedisError:
            await ws.close(code=TRY_AGAIN_LATER, reason="session store unavailable")
            return None
        return Connection(ws, claims, token)

    async def _serve(self, conn: Connection) -> None:
        session = await self.cache.get(conn.claims.sid)
        await conn.send(
            "connection_established",
            connection_id=conn.id,
            user_id=conn.claims.sub,
            session_id=conn.claims.sid,
            session_version=session["version"] if session else None,
            resume_id=conn.lineage.id,
            config_version=self.node.config.version if self.node.config else 0,
            banner=self.node.config.config.maintenance_banner if self.node.config else "",
            last_seq=conn.lineage.seq,
        )
        bucket = TokenBucket(self.settings.ws_rate, self.settings.ws_burst)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while not conn.closed:
                text = await conn.ws.receive_text()
                if await self._admit(conn, bucket, text):
                    await self._dispatch(conn, text)

    async def _admit(self, conn: Connection, bucket: TokenBucket, text: str) -> bool:
        """Per-connection and per-user limits; a refused frame is answered, never queued."""
        if len(text.encode()) > MAX_FRAME_BYTES:
            await conn.send("error", code="frame_too_large", limit_bytes=MAX_FRAME_BYTES)
            return False
        refusal = await frame_refusal(bucket, self.user_limit, conn.claims.sub)
        if refusal is not None:
            await conn.send("error", **refusal)
            return False
        return True

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
        lineage = conn.lineage
        if lineage.busy():
            await conn.send("error", code="busy", message="an agent run is already in progress")
            return
        lineage.start(self.relay.run(lineage, conn.token, payload))

    _on_start_agent = _on_user_message

    async def _on_stop_agent(self, conn: Connection, payload: dict[str, Any]) -> None:
        if await conn.lineage.stop():
            await conn.lineage.publish(
                {
                    "type": "agent_error",
                    "payload": {
                        "agent": "supervisor",
                        "state": "failed",
                        "error": "stopped by the user",
                    },
                },
                last=True,
            )
        else:
            await conn.send("error", code="no_run", message="no agent run is in progress")

    async def _on_ack(self, conn: Connection, payload: dict[str, Any]) -> None:
        """Acknowledged frames need not be kept for a resume any more."""
        seq = payload.get("seq")
        if isinstance(seq, int):
            conn.lineage.release(seq)

    async def _on_resume(self, conn: Connection, payload: dict[str, Any]) -> None:
        await resume(self.lineages, conn, payload)

    async def on_session_event(self, event: dict[str, Any]) -> None:
        await session_event(self.connections, self.lineages, event)

    async def stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "connections": len(self.connections),
                "lineages": len(self.lineages),
                "buffered_frames": sum(len(ln.buffer) for ln in self.lineages.values()),
                "largest_buffer": max((len(ln.buffer) for ln in self.lineages.values()), default=0),
                "max_backlog": max((c.max_backlog for c in self.connections.values()), default=0),
                "breaker": self.breaker.snapshot(),
            }
        )

    async def backend_ok(self) -> bool:
        """Ready only while discovery knows a healthy backend that answers."""
        url = await self.backends.url()
        return (
            url is not None
            and (await self.http.get(f"{url}/health", timeout=HEALTH_PROBE_S)).status_code == 200
        )

    async def start(self) -> None:
        await self.cache.start()
        await self.node.start()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.cache.listeners.append(queue)
        self.tasks = [
            asyncio.create_task(_pump(queue, self)),
            asyncio.create_task(expire(self.lineages, self.settings.resume_window)),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.node.stop()
        await self.cache.stop()
        await self.http.aclose()
        await self.redis.aclose()

    def routes(self) -> list[Route | WebSocketRoute]:
        secret = self.settings.jwt_secret
        return [
            WebSocketRoute("/ws", self.websocket),
            Route("/internal/stats", service_only(secret, self.stats)),
            *session_routes(self.cache, secret),
            *self.node.routes(),
        ]


def create_app(settings: Settings | None = None) -> Starlette:
    state = GatewayApp(settings or Settings.from_env())
    return make_app(state, state.routes(), state.node.middleware())


async def _pump(queue: asyncio.Queue[dict[str, Any]], state: GatewayApp) -> None:
    while True:
        event = await queue.get()
        with contextlib.suppress(Exception):
            await state.on_session_event(event)
