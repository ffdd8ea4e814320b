"""A resumable stream of frames: it outlives any one WebSocket connection.

Every frame that matters after a reconnect (agent stream, session updates) gets the next
`seq` of its lineage and stays in a bounded buffer. A client that reconnects sends
`resume` with its `resume_id` and the last `seq` it received and gets the rest, once, in
order. While a client is attached, a publisher that gets more than HIGH_WATER frames ahead
of it waits: a slow reader slows the agent stream down instead of growing memory.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apex.gateway.connection import Connection

BUFFER = 1000
HIGH_WATER = 64


class Lineage:
    def __init__(self, sid: str, user_id: str) -> None:
        self.id = secrets.token_urlsafe(12)
        self.sid, self.user_id = sid, user_id
        self.seq = 0
        self.buffer: deque[tuple[int, str]] = deque(maxlen=BUFFER)
        self.conn: Connection | None = None
        self.run: asyncio.Task[None] | None = None
        self.settled = True  # the current run's last frame has gone out (or there is none)
        self.stopping = False
        self.detached_at = time.monotonic()

    def start(self, run: Coroutine[Any, Any, None]) -> None:
        self.settled, self.stopping = False, False
        self.run = asyncio.create_task(run)

    async def emit(self, frame: dict[str, Any], *, last: bool = False) -> None:
        """Publish a frame of the current run, unless the run is being stopped: a cancel
        can get lost on its way (Python 3.11's wait_for drops one that races a result)."""
        if self.stopping:
            raise asyncio.CancelledError
        await self.publish(frame, last=last)

    async def publish(self, frame: dict[str, Any], *, last: bool = False) -> None:
        """Append `frame` with the next seq; `last` marks the run's outcome as sent."""
        conn = self.conn
        if conn is not None:
            async with conn.cond:
                await conn.cond.wait_for(
                    lambda: (
                        self.conn is not conn or conn.closed or self.seq - conn.cursor < HIGH_WATER
                    )
                )
        self.seq += 1
        self.buffer.append((self.seq, json.dumps({**frame, "seq": self.seq})))
        self.settled = self.settled or last
        if self.conn is not None:
            await self.conn.wake()

    def release(self, seq: int) -> None:
        """Frames up to `seq` were acknowledged: they need not be kept for a resume."""
        while self.buffer and self.buffer[0][0] <= seq:
            self.buffer.popleft()

    def after(self, seq: int) -> list[tuple[int, str]]:
        return [(s, text) for s, text in self.buffer if s > seq]

    def first_seq(self) -> int:
        return self.buffer[0][0] if self.buffer else self.seq + 1

    def busy(self) -> bool:
        return self.run is not None and not self.run.done()

    def cancel(self) -> bool:
        self.stopping = True  # should the cancel get lost, the run's next frame ends it
        if self.busy() and self.run is not None:
            self.run.cancel()
            return True
        return False

    async def stop(self) -> bool:
        """Cancel the run and wait until it has ended: the next message is not `busy`.
        False when there was nothing to stop: no run, or its outcome was sent already (a
        run has one terminal frame, never `completed` and then `stopped`)."""
        run = self.run
        if run is None or run.done():
            return False
        stopped, self.stopping = not self.settled, True
        while not run.done():  # cancel again until it lands
            run.cancel()
            await asyncio.wait([run], timeout=0.05)
        self.stopping = False
        return stopped


async def resume(lineages: dict[str, Lineage], conn: Connection, payload: dict[str, Any]) -> None:
    """`resume`: attach `conn` to the lineage it names, from `last_seq` on; refused when it
    is not this session's, when the client claims frames never sent, or when the frames
    after `last_seq` are no longer buffered (the client must start over)."""
    target = lineages.get(str(payload.get("resume_id", "")))
    last = payload.get("last_seq", 0)
    if target is None or target.sid != conn.claims.sid or not isinstance(last, int):
        await conn.send("error", code="resume_unknown", message="nothing to resume")
        return
    if last > target.seq:  # frames this stream never sent: the client's state is not ours
        await conn.send("error", code="resume_ahead", last_seq=target.seq)
        return
    if last + 1 < target.first_seq():
        await conn.send("error", code="resume_gap", first_available=target.first_seq())
        return
    left = conn.lineage
    if left is not target and left.seq == 0 and not left.busy():
        lineages.pop(left.id, None)  # a fresh, empty stream: nobody will resume it
    conn.attach(target, last)
    await conn.send("resumed", resume_id=target.id, last_seq=last, replaying=target.seq - last)
    await conn.wake()


async def expire(lineages: dict[str, Lineage], window: float) -> None:
    """Forget the lineages nobody resumed within `window` seconds (checked every quarter
    of it, at least once a second) and stop their runs."""
    while True:
        await asyncio.sleep(min(1.0, window / 4))
        now = time.monotonic()
        for key, ln in list(lineages.items()):
            if ln.conn is None and now - ln.detached_at > window:
                lineages.pop(key).cancel()
