"""What every suite shares: the platform under test, its budgets, and small helpers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from apex.client import ApexClient, Endpoints, gateway_http
from apex.launcher import Stack
from apex.launcher.ports import listening_socket
from apex.launcher.process import ServiceProcess

BUDGETS_FILE = Path(__file__).resolve().parent.parent / "config" / "budgets.yaml"


@dataclass(frozen=True, kw_only=True)
class Platform:
    """A running platform: launched here (`stack` set) or named by APEX_* variables."""

    endpoints: Endpoints
    stack: Stack | None
    jwt_secret: str
    fault_injection: bool

    @property
    def local(self) -> bool:
        return self.stack is not None

    def setting(self, name: str, default: str) -> str:
        """One APEX_* setting of the platform: the launched stack's, or what the job that
        names a deployment exports beside its URLs."""
        env = self.stack.env if self.stack is not None else os.environ
        return env.get(name) or default


def service_urls(endpoints: Endpoints) -> dict[str, str]:
    """Every HTTP service's base URL, by name."""
    urls = {
        "auth": endpoints.auth,
        "backend": endpoints.backend,
        "gateway": gateway_http(endpoints),
    }
    return {**urls, "idp": endpoints.idp} if endpoints.idp else urls


async def gateway_stats(api: ApexClient) -> dict[str, Any]:
    """The gateway's `/internal/stats` (connections, streams, buffers, breaker)."""
    url = f"{gateway_http(api.ep)}/internal/stats"
    return dict(await api.call("GET", url, headers=await api.service_headers()))


def budgets() -> dict[str, float]:
    data = yaml.safe_load(BUDGETS_FILE.read_text(encoding="utf-8"))
    return {str(k): float(v) for k, v in data.items()}


async def eventually(
    probe: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.002
) -> float:
    """Seconds until `probe()` holds; AssertionError if it does not within `timeout`."""
    started = time.perf_counter()
    while not await probe():
        if time.perf_counter() - started > timeout:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


async def key_gone(client: Any, key: str) -> bool:
    """Has Redis forgot `key` (expired or deleted)? A probe for `eventually`."""
    return not await client.exists(key)


@contextmanager
def extra_instance(stack: Stack, name: str, workdir: Path, **env: str) -> Iterator[ServiceProcess]:
    """A second process of service `name` on a port of its own, with `env` on top of the
    stack's environment; stopped (SIGTERM, then waited for) at the end."""
    sock = listening_socket(name, 0)
    svc = ServiceProcess(name, sock, {**stack.env, **env}, workdir)
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        sock.close()
