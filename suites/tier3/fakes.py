"""Fake peers for the tier-3 suites: real HTTP servers on 127.0.0.1 that the platform finds
through service discovery, and that the test stops.

A `FakeServer` answers each path with a (status, content type, body) its test sets, counts
the requests it gets (with their times), and can hang a path until it is stopped. `register`
writes a discovery record the way a service does (`discovery:{service}:{instance}`, JSON,
with a TTL), spelled out here rather than imported from apex.discovery.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis.asyncio as aioredis

Reply = tuple[int, str, bytes]
HANG = (0, "", b"")  # a reply that never comes
HANG_SECONDS = 5.0


@dataclass
class FakeState:
    replies: dict[str, Reply] = field(default_factory=dict)
    hits: list[tuple[str, str, float]] = field(default_factory=list)  # (method, path, time)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def times(self, path: str) -> list[float]:
        with self.lock:
            return [at for _, p, at in self.hits if p == path]

    def hung(self) -> list[float]:
        """When the requests for hanging paths came."""
        with self.lock:
            return [at for _, p, at in self.hits if self.replies.get(p) == HANG]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        state = self.server.state
        with state.lock:
            state.hits.append((self.command, self.path, time.time()))
            reply = state.replies.get(self.path, (404, "text/plain", b"no such path"))
            state.in_flight += reply != HANG  # a hung request is no answer under way
        if reply == HANG:  # far longer than any caller's timeout, then no answer at all
            state.stopping.wait(HANG_SECONDS)
            return
        try:
            self._send(*reply)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


@contextmanager
def fake_server() -> Iterator[tuple[str, FakeState]]:
    """(base URL, state) of a server running for the block; stopped, hung requests
    released, at the end."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeState()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state
    finally:
        server.state.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def record(service: str, instance: str, url: str, status: str = "healthy") -> dict[str, Any]:
    now = time.time()
    return {
        "service": service,
        "instance": instance,
        "url": url,
        "status": status,
        "pid": 0,
        "started_at": now,
        "heartbeat_at": now,
    }


async def register(client: aioredis.Redis, entry: dict[str, Any], ttl_ms: int = 10_000) -> str:
    """Put `entry` in discovery; returns its key (delete it to deregister)."""
    key = f"discovery:{entry['service']}:{entry['instance']}"
    await client.set(key, json.dumps(entry), px=ttl_ms)
    return key
