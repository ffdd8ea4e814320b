"""WebSocket reconnection with state recovery ($8K MRR): a dropped connection loses nothing.

Frames that matter carry a `seq`; a client that reconnects and sends `resume` with its
`resume_id` and the last `seq` it saw gets everything after it, once, in order, including
what was produced while it was away. Fifty clients reconnecting at once all recover.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from apex.client import ApexClient, Endpoints, Tokens, connect, receive

pytestmark = pytest.mark.anyio
STREAMED = {"stream_chunk": 4}


def _drop(ws: ClientConnection) -> None:
    """The network goes away: no close handshake."""
    ws.transport.abort()


async def _resume(
    endpoints: Endpoints, tokens: Tokens, resume_id: str, last_seq: int
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(endpoints, tokens.access)
    await receive(ws)
    payload = {"resume_id": resume_id, "last_seq": last_seq}
    await ws.send(json.dumps({"type": "resume", "payload": payload}))
    return ws, await receive(ws)


async def _until_done(ws: ClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or not _final(frames[-1]):
        frames.append(await receive(ws, timeout))
    return frames


def _final(frame: dict[str, Any]) -> bool:
    return (
        frame["type"] in ("agent_completed", "agent_error")
        and frame["payload"].get("agent") == "supervisor"
    )


async def _start_then_drop(
    endpoints: Endpoints, tokens: Tokens
) -> tuple[str, list[dict[str, Any]]]:
    """Ask for a long streamed answer, read five frames, lose the network."""
    ws = await connect(endpoints, tokens.access)
    resume_id = (await receive(ws))["payload"]["resume_id"]
    await ws.send(
        json.dumps(
            {
                "type": "user_message",
                "payload": {"content": "usage report and how to optimize", "options": STREAMED},
            }
        )
    )
    before: list[dict[str, Any]] = []
    while len(before) < 5:
        before.append(await receive(ws))
        assert before[-1]["type"] != "error", before[-1]  # fail fast, not on a timeout
    _drop(ws)
    return resume_id, before


async def test_reconnect_resumes_in_order_exactly_once(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("resume")
    resume_id, before = await _start_then_drop(endpoints, tokens)
    await asyncio.sleep(0.5)  # the run goes on while the client is away
    started = time.perf_counter()
    ws2, resumed = await _resume(endpoints, tokens, resume_id, before[-1]["seq"])
    after = await _until_done(ws2)
    await ws2.close()
    assert resumed["type"] == "resumed" and time.perf_counter() - started < 2
    seqs = [f["seq"] for f in before + after]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing twice
    assert after[-1]["type"] == "agent_completed"
    chunks = [
        f["payload"]["index"]
        for f in before + after
        if f["type"] == "partial_result" and f["payload"]["agent"] == "supervisor"
    ]
    assert chunks == list(range(len(chunks))) and len(chunks) > 20


async def test_updates_made_while_away_are_delivered_on_resume(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("away")
        ws = await connect(endpoints, tokens.access)
        hello = (await receive(ws))["payload"]
        _drop(ws)
        await asyncio.sleep(0.1)
        await api.update_session(tokens, {"cart": 3})
        await api.update_session(tokens, {"cart": 4})
        await asyncio.sleep(0.2)
    ws2, resumed = await _resume(endpoints, tokens, hello["resume_id"], hello["last_seq"])
    replayed = [await receive(ws2), await receive(ws2)]
    await ws2.close()
    assert resumed["payload"]["replaying"] == 2
    assert [(f["type"], f["payload"]["data"]["cart"]) for f in replayed] == [
        ("session_updated", 3),
        ("session_updated", 4),
    ]


async def test_another_session_cannot_resume_a_stream(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, alice = await api.new_user("alice")
        _, mallory = await api.new_user("mallory")
    ws = await connect(endpoints, alice.access)
    resume_id = (await receive(ws))["payload"]["resume_id"]
    _drop(ws)
    ws2, answer = await _resume(endpoints, mallory, resume_id, 0)
    await ws2.close()
    assert (answer["type"], answer["payload"]["code"]) == ("error", "resume_unknown")


async def _client(api: ApexClient) -> tuple[Tokens, str]:
    _, tokens = await api.new_user("crowd")
    ws = await connect(api.ep, tokens.access)
    resume_id = (await receive(ws))["payload"]["resume_id"]
    _drop(ws)
    return tokens, resume_id


async def test_fifty_clients_reconnecting_at_once_all_recover(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        clients = [await _client(api) for _ in range(50)]
        await asyncio.gather(*(api.update_session(t, {"while_away": True}) for t, _ in clients))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    results = await asyncio.gather(*(_recover(endpoints, t, r) for t, r in clients))
    elapsed = time.perf_counter() - started
    assert all(results)
    assert elapsed < 5


async def _recover(endpoints: Endpoints, tokens: Tokens, resume_id: str) -> bool:
    ws, resumed = await _resume(endpoints, tokens, resume_id, 0)
    frame = await receive(ws)
    await ws.close()
    return bool(resumed["type"] == "resumed" and frame["type"] == "session_updated")
