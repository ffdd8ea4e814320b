"""A stand-in backend for the relay and breaker tests: a real HTTP server on 127.0.0.1,
registered in discovery as the only healthy backend while the real one reports itself
unhealthy (its fault switch), answering each agent run as the test scripts it. It records
what reached it, so a test sees which calls the gateway let through, independently of the
gateway's own view."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from apex.client import ApexClient
from apex.launcher import Stack

RESOLVER_TTL = 0.3  # the gateway re-reads discovery at least this often (0.25 s)
HELD_AT_MOST = 20.0  # a held answer is let go after this, whatever the test does


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status and body, or a 200 NDJSON stream of `lines`; `held`
    answers only once the stub is released (or the gateway gives up)."""

    status: int = 200
    body: str = ""
    lines: tuple[str, ...] | None = None
    held: bool = False


def completed(content: str = "stub answer") -> Reply:
    """A well-formed agent run: started, a partial result, the supervisor's completion."""
    frames = [
        {"type": "agent_started", "payload": {"agent": "supervisor", "state": "running"}},
        {"type": "partial_result", "payload": {"agent": "supervisor", "content": content}},
        {"type": "agent_completed", "payload": {"agent": "supervisor", "state": "completed"}},
    ]
    return Reply(lines=tuple(json.dumps(f) for f in frames))


@dataclass
class StubBackend:
    script: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=completed)
    runs: list[dict[str, Any]] = field(default_factory=list)  # agent runs that reached us
    released: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def wait_for_runs(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.runs) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers, body = await asyncio.wait_for(_read_request(reader), 5)
            if path != "/api/agent/run":  # readiness checks, metrics scrapes
                await _answer(writer, Reply(body='{"status": "ok"}' if path == "/health" else ""))
                return
            self.runs.append({"method": method, "path": path, "headers": headers, "body": body})
            self.arrived.set()
            reply = self.script.popleft() if self.script else self.default
            if reply.held:
                await self._hold(reader)
            await _answer(writer, reply)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass  # the gateway went away first: nothing to answer
        finally:
            writer.close()

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        """Until released, or until the gateway closes the connection (its timeout)."""
        gone = asyncio.ensure_future(reader.read())
        done = asyncio.ensure_future(self.released.wait())
        try:
            await asyncio.wait({gone, done}, timeout=HELD_AT_MOST, return_when="FIRST_COMPLETED")
        finally:
            gone.cancel()
            done.cancel()
        if not self.released.is_set():
            raise OSError("the gateway gave up on this call")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], Any]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, path, _ = head[0].split(" ", 2)
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)
    }
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, json.loads(raw) if raw else None


async def _answer(writer: asyncio.StreamWriter, reply: Reply) -> None:
    """The reply, then the connection closes (no length: the body ends with it)."""
    kind = "application/x-ndjson" if reply.lines is not None else "application/json"
    writer.write(f"HTTP/1.1 {reply.status} Stub\r\nContent-Type: {kind}\r\n".encode())
    writer.write(b"Connection: close\r\n\r\n")
    for line in reply.lines or ():
        writer.write(line.encode() + b"\n")
        await writer.drain()
    writer.write(reply.body.encode())
    await writer.drain()


def _record(url: str) -> str:
    now = time.time()
    return json.dumps(
        {
            "service": "backend",
            "instance": f"backend-stub-{secrets.token_hex(3)}",
            "url": url,
            "status": "healthy",
            "pid": os.getpid(),
            "started_at": now,
            "heartbeat_at": now,
        }
    )


async def real_backend_unhealthy(api: ApexClient, unhealthy: bool) -> None:
    await api.call(
        "POST",
        f"{api.ep.backend}/internal/fault",
        json={"unhealthy": unhealthy},
        headers=await api.service_headers(),
    )


@contextlib.asynccontextmanager
async def stub_backend(stack: Stack, api: ApexClient) -> AsyncIterator[StubBackend]:
    """The stub as the gateway's only backend for the block; the real one back after it."""
    stub = StubBackend()
    stub.server = await asyncio.start_server(stub.handle, "127.0.0.1", 0)
    key = f"discovery:backend:stub-{secrets.token_hex(4)}"
    client = aioredis.Redis.from_url(stack.redis_url, decode_responses=True, socket_timeout=5)
    try:
        await client.set(key, _record(stub.url), px=120_000)
        await real_backend_unhealthy(api, True)
        await asyncio.sleep(RESOLVER_TTL)  # the gateway's cached view of discovery expires
        yield stub
    finally:
        with contextlib.suppress(httpx.HTTPError, Exception):
            await real_backend_unhealthy(api, False)
        await client.delete(key)
        await client.aclose()
        stub.released.set()
        await asyncio.sleep(RESOLVER_TTL)  # still answering until the gateway forgot it
        stub.server.close()
        await stub.server.wait_closed()
