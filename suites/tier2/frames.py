"""WebSocket frames for the tier-2 suites, written here (not taken from the gateway), and
clock helpers for the fixed one-second windows of the per-user limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from websockets.asyncio.client import ClientConnection

from apex.client import Endpoints, Tokens, connect, receive

SUPERVISOR_FINAL = ("agent_completed", "agent_error")


async def send(ws: ClientConnection, kind: str, **payload: Any) -> None:
    await ws.send(json.dumps({"type": kind, "payload": payload}))


async def pings(ws: ClientConnection, count: int, first: int = 0) -> list[dict[str, Any]]:
    """Send `count` pings at once, then read one answer per ping (each within 10 s)."""
    for n in range(first, first + count):
        await ws.send(json.dumps({"type": "ping", "payload": {"n": n}}))
    return [await receive(ws) for _ in range(count)]


def is_final(frame: dict[str, Any]) -> bool:
    return frame["type"] in SUPERVISOR_FINAL and frame["payload"].get("agent") == "supervisor"


async def until_final(ws: ClientConnection, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Frames up to the supervisor's last one; each must come within `timeout`."""
    frames: list[dict[str, Any]] = []
    while not frames or not (is_final(frames[-1]) or frames[-1]["type"] == "error"):
        frames.append(await receive(ws, timeout))
    return frames


def window_slot() -> int:
    """The fixed one-second window the per-user limits count in now (wall clock)."""
    return math.floor(time.time())


async def fresh_window(least_left: float = 0.6, odd: bool = False) -> int:
    """The current window if at least `least_left` s of it remain (and it is odd, if asked),
    else the next such one."""
    while True:
        left = math.floor(time.time()) + 1 - time.time()
        if left >= least_left and (not odd or window_slot() % 2):
            return window_slot()
        await asyncio.sleep(left + 0.01)


async def next_window(slot: int) -> None:
    """Sleep until window `slot` is over."""
    await asyncio.sleep(max(0.0, slot + 1 - time.time()) + 0.01)


def drop(ws: ClientConnection) -> None:
    """The network goes away: no close handshake."""
    ws.transport.abort()


async def hello(ws: ClientConnection) -> dict[str, Any]:
    """The `connection_established` payload every connection starts with."""
    frame = await receive(ws)
    assert frame["type"] == "connection_established", frame
    return dict(frame["payload"])


async def resume(ws: ClientConnection, resume_id: str, last_seq: Any) -> dict[str, Any]:
    """Ask to resume; the gateway's answer (`resumed` or an `error`)."""
    await send(ws, "resume", resume_id=resume_id, last_seq=last_seq)
    return await receive(ws)


class Sockets:
    """The WebSockets a test opens, every one closed when it ends, pass or fail (a dropped
    one is already gone)."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.opened: list[ClientConnection] = []

    async def open(self, tokens: Tokens) -> tuple[ClientConnection, dict[str, Any]]:
        """A new connection and its `connection_established` payload."""
        ws = await connect(self.endpoints, tokens.access)
        self.opened.append(ws)
        return ws, await hello(ws)

    async def close_all(self) -> None:
        for ws in self.opened:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
