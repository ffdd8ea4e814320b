"""Agent runs relayed from the backend into a lineage, behind a circuit breaker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from apex.breaker import BreakerState, CircuitBreaker
from apex.discovery import PeerResolver
from apex.gateway.lineage import Lineage

TERMINAL = ("agent_completed", "agent_error")  # the supervisor's last frame is one of them


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "payload": {"code": code, "message": message, **extra}}


class Relay:
    def __init__(
        self, http: httpx.AsyncClient, backends: PeerResolver, breaker: CircuitBreaker
    ) -> None:
        self.http, self.backends, self.breaker = http, backends, breaker

    async def run(self, lineage: Lineage, token: str, payload: dict[str, Any]) -> None:
        """Stream the backend's NDJSON events into the lineage; fail fast when it is down."""
        if not self.breaker.allow():
            retry = round(self.breaker.retry_after() * 1000)
            message = "the agent service is recovering; try again shortly"
            await lineage.emit(
                _error("circuit_open", message, retry_after_ms=max(1, retry)), last=True
            )
            return
        try:
            await self._stream(lineage, token, payload)
        except httpx.HTTPError as exc:
            self.breaker.failure()
            await lineage.emit(
                _error(
                    "backend_unavailable",
                    f"the agent service is unavailable ({type(exc).__name__})",
                ),
                last=True,
            )
        except asyncio.CancelledError:
            if self.breaker.state is BreakerState.HALF_OPEN:
                self.breaker.failure()  # a cancelled probe proved nothing: not wedged half open
            raise

    async def _stream(self, lineage: Lineage, token: str, payload: dict[str, Any]) -> None:
        body = {k: payload[k] for k in ("content", "thread_id", "options") if k in payload}
        headers = {"authorization": f"Bearer {token}"}
        base = await self.backends.url()
        if base is None:
            raise httpx.ConnectError("no healthy backend is registered in discovery")
        url = f"{base}/api/agent/run"
        async with self.http.stream("POST", url, json=body, headers=headers) as resp:
            if resp.status_code >= 500:
                raise httpx.HTTPStatusError("backend error", request=resp.request, response=resp)
            self.breaker.success()
            if resp.status_code != 200:
                detail = (await resp.aread()).decode(errors="replace")[:200]
                await lineage.emit(_error(f"backend_{resp.status_code}", detail), last=True)
                return
            await _relay_lines(lineage, resp)


async def _relay_lines(lineage: Lineage, resp: httpx.Response) -> None:
    """Each NDJSON line as a frame; a stream that cannot be read, or that ends before the
    supervisor's last frame, ends with an error frame: the client is never left waiting."""
    async for line in resp.aiter_lines():
        if not line.strip():
            continue
        try:
            frame = json.loads(line)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            await lineage.emit(
                _error("backend_invalid_stream", "unreadable agent stream"), last=True
            )
            return
        if _is_final(frame):  # the outcome: what the backend sends after it is not relayed
            await lineage.emit(frame, last=True)
            return
        await lineage.emit(frame)
    await lineage.emit(
        _error("backend_incomplete_stream", "the agent stream ended early"), last=True
    )


def _is_final(frame: dict[str, Any]) -> bool:
    payload = frame.get("payload")
    return (
        frame.get("type") in TERMINAL
        and isinstance(payload, dict)
        and payload.get("agent") == "supervisor"
    )
