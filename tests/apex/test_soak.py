"""A bounded soak: many clients at once against 127.0.0.1 for a fixed time. Every frame
the gateway accepts is answered, memory stays flat, and every connection is gone after."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import ClientConnection

from apex.client import ApexClient, Endpoints, ask, connect, gateway_http, receive
from apex.launcher import Stack

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
CLIENTS = 30
SECONDS = 8.0
WARM_UP = 2.0


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    refused: int = 0  # rate_limited: answered with an error, not accepted
    agent_runs: int = 0


def rss_kib(pid: int | None) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def _client(ws: ClientConnection, tally: Tally, deadline: float) -> None:
    n = 0
    while time.monotonic() < deadline:
        n += 1
        if n % 15 == 0:
            frames = await ask(ws, "show my usage data")
            assert frames[-1]["type"] == "agent_completed"
            tally.agent_runs += 1
            continue
        tally.sent += 1
        await ws.send(json.dumps({"type": "ping", "payload": {"n": n}}))
        answer = await receive(ws)
        if answer["type"] == "pong":
            assert answer["payload"] == {"n": n}  # in order, nothing dropped or swapped
            tally.answered += 1
        else:
            assert answer["payload"]["code"] == "rate_limited"
            tally.refused += 1
        await anyio.sleep(0.05)


async def _open(endpoints: Endpoints, api: ApexClient) -> ClientConnection:
    _, tokens = await api.new_user("soak")
    ws = await connect(endpoints, tokens.access)
    await receive(ws)  # connected
    return ws


async def _connections(api: ApexClient, endpoints: Endpoints) -> int:
    url = f"{gateway_http(endpoints)}/internal/stats"
    stats = await api.call("GET", url, headers=await api.service_headers())
    return int(stats["connections"])


async def test_many_clients_lose_nothing_and_leave_nothing(
    endpoints: Endpoints, stack: Stack
) -> None:
    gateway = stack.services["gateway"].pid
    tally = Tally()
    async with ApexClient(endpoints) as api:
        sockets = [await _open(endpoints, api) for _ in range(CLIENTS)]
        deadline = time.monotonic() + SECONDS
        async with anyio.create_task_group() as tasks:
            for ws in sockets:
                tasks.start_soon(_client, ws, tally, deadline)
            await anyio.sleep(WARM_UP)
            warm = rss_kib(gateway)
        end = rss_kib(gateway)
        for ws in sockets:
            await ws.close()
        with anyio.fail_after(5):
            while await _connections(api, endpoints):
                await anyio.sleep(0.1)
    print(f"soak: {tally}, gateway RSS {warm} -> {end} KiB")
    assert tally.sent == tally.answered + tally.refused and tally.answered > CLIENTS * 50
    assert tally.agent_runs >= CLIENTS
    assert end <= warm * 1.2 + 8 * 1024, (warm, end)
