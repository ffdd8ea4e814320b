"""Agent runs relayed from the backend into a lineage, behind a circuit breaker."""

from __future__ import annotations

import json
from typing import Any

import httpx

from apex.breaker import CircuitBreaker
from apex.discovery import PeerResolver
from apex.gateway.lineage import Lineage


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
            await lineage.publish(
                _error(
                    "circuit_open",
                    "the agent service is recovering; try again shortly",
                    retry_after_ms=max(1, retry),
                )
            )
            return
        try:
            await self._stream(lineage, token, payload)
        except httpx.HTTPError as exc:
            self.breaker.failure()
            await lineage.publish(
                _error(
                    "backend_unavailable",
                    f"the agent service is unavailable ({type(exc).__name__})",
                )
            )

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
                await lineage.publish(_error(f"backend_{resp.status_code}", detail))
                return
            async for line in resp.aiter_lines():
                if line:
                    await lineage.publish(json.loads(line))
