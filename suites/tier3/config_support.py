"""The configuration suite's view of a running platform: every service's configuration in
force, publications through the backend, agent runs that show which timeout is in force,
and a second platform launched with a configuration file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from apex.client import ApexClient, Endpoints
from apex.launcher import Stack, StackConfig
from apex.tls import tls
from suites.platform import budgets, eventually, service_urls

FILE_SECRET = "sk-file-NEVER-SHOWN-7a7a"
CONFIG_FILE = f"""\
agent_timeout: 0.3
maintenance_banner: from the file
support_email: file@apex.test
features: {{beta: true}}
llm_api_key: {FILE_SECRET}
"""
STACK_ENV = {
    "APEX_FAULT_INJECTION": "1",
    "APEX_DISCOVERY_TTL": "1.5",
    "APEX_CFG_SUPPORT_EMAIL": "env@apex.test",  # the environment beats the file
}


@contextmanager
def file_stack(workdir: Path) -> Iterator[tuple[Stack, Path]]:
    """A second platform whose services read `workdir/apex.yaml`; stopped at the end."""
    file = workdir / "apex.yaml"
    file.write_text(CONFIG_FILE, encoding="utf-8")
    with Stack(StackConfig(env={**STACK_ENV, "APEX_CONFIG_FILE": str(file)})) as stack:
        yield stack, file


async def configs(api: ApexClient) -> dict[str, dict[str, Any]]:
    """Every service's `/internal/config` (service, version, configuration), by service."""
    headers = await api.service_headers()
    urls = service_urls(api.ep)
    answers = await asyncio.gather(
        *(api.call("GET", f"{url}/internal/config", headers=headers) for url in urls.values())
    )
    return {name: dict(answer) for name, answer in zip(urls, answers, strict=True)}


async def publish(api: ApexClient, changes: Any) -> httpx.Response:
    url = f"{api.ep.backend}/internal/config"
    return await api.http.put(url, json=changes, headers=await api.service_headers())


async def reached(api: ApexClient, version: int, timeout: float | None = None) -> float:
    """Seconds until every service runs configuration `version` (by default within the
    propagation budget)."""

    async def everywhere() -> bool:
        return all(c["version"] == version for c in (await configs(api)).values())

    limit = budgets()["session_propagation_s"] if timeout is None else timeout
    return await eventually(everywhere, limit, interval=0.005)


async def timed_out_after(endpoints: Endpoints, token: str) -> str:
    """Run an agent whose optimization sub-agent stalls; the error it times out with."""
    body = {
        "content": "How can I reduce my latency?",
        "options": {"faults": {"optimization": "slow"}},
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(verify=tls(), timeout=10.0) as http,
        http.stream(
            "POST", f"{endpoints.backend}/api/agent/run", json=body, headers=headers
        ) as resp,
    ):
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            event = json.loads(line) if line else {}
            payload = event.get("payload", {})
            if event.get("type") == "agent_error" and payload.get("agent") == "optimization":
                return str(payload["error"])
    raise AssertionError("the run ended without the optimization agent's error")


@asynccontextmanager
async def monitored(url: str) -> AsyncIterator[list[tuple[float, str]]]:
    """The commands Redis runs while the block runs (MONITOR): (unix time, 'NAME arg ...')."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    seen: list[tuple[float, str]] = []
    try:
        async with client.monitor() as monitor:

            async def read() -> None:
                while True:
                    command = await monitor.next_command()
                    seen.append((float(command["time"]), str(command["command"])))

            reader = asyncio.create_task(read())
            try:
                yield seen
            finally:
                reader.cancel()
    finally:
        await client.aclose()
