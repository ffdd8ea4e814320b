"""One authenticated WebSocket connection and the frames it exchanges."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from apex.tokens import Claims

POLICY_VIOLATION = 1008


def frame(kind: str, **payload: Any) -> str:
    return json.dumps({"type": kind, "payload": payload})


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
    """Sends are serialised; the current agent run can be cancelled."""

    def __init__(self, ws: WebSocket, claims: Claims, token: str) -> None:
        self.ws, self.claims, self.token = ws, claims, token
        self.id = str(uuid.uuid4())
        self.lock = asyncio.Lock()
        self.run: asyncio.Task[None] | None = None
        self.closed = False

    async def send(self, kind: str, **payload: Any) -> None:
        await self.send_raw(frame(kind, **payload))

    async def send_raw(self, text: str) -> None:
        if self.closed:
            return
        async with self.lock:
            try:
                await self.ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, reason=reason)

    def cancel_run(self) -> bool:
        if self.run is not None and not self.run.done():
            self.run.cancel()
            return True
        return False
