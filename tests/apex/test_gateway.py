"""The WebSocket gateway over real sockets: handshake, frames, agent streams."""

from __future__ import annotations

import json

import pytest
import websockets

from apex.client import ApexClient, Endpoints, ask, connect, receive

pytestmark = pytest.mark.anyio


async def test_header_and_subprotocol_handshakes(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
    for via in ("header", "subprotocol"):
        async with await connect(endpoints, tokens.access, via=via) as ws:
            first = await receive(ws)
            assert first["type"] == "connection_established"
            assert first["payload"]["session_id"] == tokens.session_id


@pytest.mark.parametrize("url_suffix", ["?token=x", "?access_token=abc"])
async def test_query_string_token_is_refused_with_1008(
    endpoints: Endpoints, url_suffix: str
) -> None:
    async with websockets.connect(endpoints.gateway + url_suffix) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_invalid_token_is_refused_with_1008(endpoints: Endpoints) -> None:
    async with await connect(endpoints, "not-a-token") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_ping_errors_and_agent_stream(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "ping", "payload": {"n": 7}}))
        assert await receive(ws) == {"type": "pong", "payload": {"n": 7}}
        await ws.send("{not json")
        assert (await receive(ws))["payload"]["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "teleport", "payload": {}}))
        assert (await receive(ws))["payload"]["code"] == "unknown_type"
        frames = await ask(ws, "show my usage data")
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "agent_started" and kinds[-1] == "agent_completed"
    assert "final_report" in kinds
