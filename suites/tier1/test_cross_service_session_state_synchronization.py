"""Cross-service session state synchronization ($15K MRR): one session, the same everywhere.

A session created at login is visible to auth, backend and gateway through Redis; an update
in one service reaches the others (and the user's live connection) within budget; logout
and expiry end it everywhere; concurrent updates never lose each other.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from apex.client import ApexClient, Endpoints, Tokens, connect, gateway_http, receive
from suites.platform import budgets, eventually

pytestmark = pytest.mark.anyio


def _services(endpoints: Endpoints) -> list[str]:
    return [endpoints.auth, endpoints.backend, gateway_http(endpoints)]


async def _views(api: ApexClient, sid: str) -> list[dict[str, Any] | None]:
    return [await api.session_view(url, sid) for url in _services(api.ep)]


async def _new_session(api: ApexClient) -> Tokens:
    _, tokens = await api.new_user("session")
    return tokens


async def test_login_session_is_visible_to_every_service(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        me = await api.me(tokens)
        views = await _views(api, tokens.session_id)
    for view in views:
        assert view is not None
        assert (view["sid"], view["user_id"], view["version"]) == (
            tokens.session_id,
            me["user_id"],
            1,
        )


async def _reached_everywhere(api: ApexClient, sid: str, version: int) -> float:
    async def everywhere() -> bool:
        views = await _views(api, sid)
        return all(v is not None and v["version"] == version for v in views)

    return await eventually(everywhere, budgets()["session_propagation_s"])


async def test_update_propagates_to_all_services_and_the_client(
    endpoints: Endpoints, record_property: Any
) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        await _views(api, tokens.session_id)  # every service now caches version 1
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            updated = await api.update_session(tokens, {"theme": "dark", "plan": "pro"})
            assert updated["version"] == 2
            took = await _reached_everywhere(api, tokens.session_id, 2)
            pushed = await receive(ws, timeout=budgets()["session_propagation_s"])
        views = await _views(api, tokens.session_id)
    record_property("session_propagation_s", round(took, 4))
    data = {"user_id": updated["data"]["user_id"], "theme": "dark", "plan": "pro"}
    assert all(v is not None and v["data"] == data for v in views)
    assert (pushed["type"], pushed["payload"]) == ("session_updated", {"version": 2, "data": data})
    assert isinstance(pushed["seq"], int)  # resumable after a reconnect


async def _ended_everywhere(api: ApexClient, sid: str) -> None:
    async def gone() -> bool:
        return all(v is None for v in await _views(api, sid))

    await eventually(gone, budgets()["session_propagation_s"])


async def _closed_with_1008(ws: websockets.ClientConnection) -> None:
    frame = await receive(ws, timeout=2)
    assert frame["payload"]["code"] == "session_ended"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_logout_invalidates_the_session_everywhere(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        await _views(api, tokens.session_id)
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            await api.logout(tokens)
            await _closed_with_1008(ws)
        await _ended_everywhere(api, tokens.session_id)
        resp = await api.http.patch(
            f"{endpoints.backend}/api/session", json={"x": 1}, headers=tokens.header
        )
    assert resp.status_code == 401


async def test_expiry_invalidates_the_session_everywhere(endpoints: Endpoints) -> None:
    if not endpoints.redis:
        pytest.skip("needs REDIS_URL to shorten the session's lifetime")
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        await _views(api, tokens.session_id)
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            client = aioredis.Redis.from_url(endpoints.redis)
            await client.pexpire(f"session:{tokens.session_id}", 200)
            await client.aclose()
            await _closed_with_1008(ws)
        await _ended_everywhere(api, tokens.session_id)
        with pytest.raises(Exception, match="401"):
            await api.me(tokens)


async def test_concurrent_updates_are_all_kept(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        results = await asyncio.gather(
            *(api.update_session(tokens, {f"k{i}": i}) for i in range(50))
        )
        assert sorted(r["version"] for r in results) == list(range(2, 52))

        await _reached_everywhere(api, tokens.session_id, 51)
        views = await _views(api, tokens.session_id)
    for view in views:
        assert view is not None
        assert {k: v for k, v in view["data"].items() if k != "user_id"} == {
            f"k{i}": i for i in range(50)
        }
