"""One authenticated WebSocket connection: a writer task drains its lineage and local frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from typing import Any

from starlette.websockets import WebSocket

from apex.gateway.lineage import HIGH_WATER, Lineage
from apex.tokens import Claims

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


def frame(kind: str, /, **payload: Any) -> dict[str, Any]:
    return {"type": kind, "payload": payload}


def parse_frame(text: str) -> tuple[str, dict[str, Any]] | str:
    """(type, payload) of a client frame, or the error code that describes it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return "invalid_json"
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return "invalid_frame"
    payload = data.get("payload", {})
    return (data["type"], payload) if isinstance(payload, dict) else "invalid_frame"


class Connection:
    def __init__(self, ws: WebSocket, claims: Claims, token: str) -> None:
        self.ws, self.claims, self.token = ws, claims, token
        self.id = str(uuid.uuid4())
        self.cond = asyncio.Condition()
        self.local: deque[str] = deque()
        self.lineage = Lineage(claims.sid, claims.sub)
        self.lineage.conn = self
        self.cursor = 0
        self.closed = False
        self.max_backlog = 0

    async def wake(self) -> None:
        async with self.cond:
            self.cond.notify_all()

    async def send(self, kind: str, /, **payload: Any) -> None:
        """A connection-local frame (no seq): replies to this connection only."""
        async with self.cond:
            await self.cond.wait_for(lambda: self.closed or len(self.local) < HIGH_WATER)
            self.local.append(json.dumps(frame(kind, **payload)))
            self.cond.notify_all()

    def attach(self, lineage: Lineage, last_seq: int) -> None:
        """Continue `lineage` from `last_seq` on this connection (after a reconnect)."""
        if self.lineage.conn is self:
            self.lineage.conn = None
        self.lineage, self.cursor = lineage, last_seq
        lineage.conn = self

    async def write_loop(self) -> None:
        """Send local frames first, then the lineage's frames after the cursor, in order."""
        while not self.closed:
            async with self.cond:
                await self.cond.wait_for(
                    lambda: self.closed or bool(self.local) or self.lineage.seq > self.cursor
                )
                batch = [(None, self.local.popleft()) for _ in range(len(self.local))]
                backlog = self.lineage.after(self.cursor)
            self.max_backlog = max(self.max_backlog, len(backlog))
            for seq, text in [*batch, *backlog]:
                await self.ws.send_text(text)
                if seq is not None:
                    self.cursor = seq
            await self.wake()

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self.wake()
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, reason=reason)

    async def detach(self) -> None:
        """The socket is gone: its lineage keeps buffering for a reconnect."""
        self.closed = True
        if self.lineage.conn is self:
            self.lineage.conn = None
            self.lineage.detached_at = time.monotonic()
        await self.wake()
