"""Cross-service session state synchronization ($15K MRR): one session, the same everywhere.

A session created at login is visible to auth, backend and gateway through Redis; an update
in one service reaches the others (and the user's live connection) within budget; logout
and expiry end it everywhere; concurrent updates never lose each other.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from apex.client import ApexClient, ApexError, Endpoints, Tokens, connect, gateway_http, receive
from apex.launcher import Stack
from suites.platform import budgets, eventually, gateway_stats

pytestmark = pytest.mark.anyio
CHANNEL = "apex:session-events"  # the published contract, written here


def _services(endpoints: Endpoints) -> list[str]:
    return [endpoints.auth, endpoints.backend, gateway_http(endpoints)]


async def _views(api: ApexClient, sid: str) -> list[dict[str, Any] | None]:
    return [await api.session_view(url, sid) for url in _services(api.ep)]


async def _new_session(api: ApexClient) -> Tokens:
    _, tokens = await api.new_user("session")
    return tokens


async def test_login_session_is_visible_to_every_service(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        email, tokens = await api.new_user("session")
        me = await api.me(tokens)
        views = await _views(api, tokens.session_id)
    for view in views:
        assert view is not None
        assert (view["sid"], view["user_id"], view["email"], view["version"]) == (
            tokens.session_id,
            me["user_id"],
            email,
            1,
        )
        assert view["data"] == {"user_id": me["user_id"]}
        assert view["created_at"] == view["updated_at"]
        assert abs(view["created_at"] - time.time()) < 60


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
        me = await api.me(tokens)
        await _views(api, tokens.session_id)  # every service now caches version 1
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            updated = await api.update_session(tokens, {"theme": "dark", "plan": "pro"})
            assert updated["version"] == 2
            took = await _reached_everywhere(api, tokens.session_id, 2)
            pushed = await receive(ws, timeout=budgets()["session_propagation_s"])
        views = await _views(api, tokens.session_id)
    record_property("session_propagation_s", round(took, 4))
    data = {"user_id": me["user_id"], "theme": "dark", "plan": "pro"}
    assert all(v is not None and v["data"] == data for v in views)
    assert (pushed["type"], pushed["payload"]) == ("session_updated", {"version": 2, "data": data})
    assert pushed["seq"] == 1  # the first frame of this connection's resumable stream


async def _ended_everywhere(api: ApexClient, sid: str) -> None:
    async def gone() -> bool:
        return all(v is None for v in await _views(api, sid))

    await eventually(gone, budgets()["session_propagation_s"])


async def _closed_with_1008(ws: websockets.ClientConnection, reason: str) -> None:
    frame = await receive(ws, timeout=2)
    assert (frame["type"], frame["payload"]) == (
        "error",
        {"code": "session_ended", "message": reason},
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "session ended")


async def test_logout_invalidates_the_session_everywhere(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        await _views(api, tokens.session_id)
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            await api.logout(tokens)
            await _closed_with_1008(ws, "logout")
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
            try:
                await client.pexpire(f"session:{tokens.session_id}", 200)
            finally:
                await client.aclose()
            await _closed_with_1008(ws, "expired")
        await _ended_everywhere(api, tokens.session_id)
        with pytest.raises(ApexError) as refused:
            await api.me(tokens)
    assert refused.value.status == 401


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


async def test_updates_merge_into_the_session_data(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        user_id = (await api.me(tokens))["user_id"]
        first = await api.update_session(tokens, {"theme": "dark", "plan": "pro"})
        second = await api.update_session(tokens, {"theme": "light", "seats": 3})
        await _reached_everywhere(api, tokens.session_id, 3)
        views = await _views(api, tokens.session_id)
    expected = {"user_id": user_id, "theme": "light", "plan": "pro", "seats": 3}
    assert (first["version"], second["version"]) == (2, 3)
    assert second["data"] == expected  # overwritten key, kept key, new key
    assert all(v is not None and v["data"] == expected for v in views)
    assert second["updated_at"] > first["updated_at"]


async def test_an_update_keeps_the_session_expiry(endpoints: Endpoints, local_stack: Stack) -> None:
    # a session lives as long as its refresh token: 7 days unless configured
    lifetime = int(local_stack.env.get("APEX_REFRESH_TOKEN_TTL") or 7 * 24 * 3600)
    client = aioredis.Redis.from_url(endpoints.redis)
    try:
        async with ApexClient(endpoints) as api:
            tokens = await _new_session(api)
            key = f"session:{tokens.session_id}"
            created = await client.ttl(key)
            await api.update_session(tokens, {"theme": "dark"})
            updated = await client.ttl(key)
    finally:
        await client.aclose()
    assert lifetime - 5 <= created <= lifetime
    assert created - 2 <= updated <= created  # kept: neither dropped (-1) nor renewed


async def test_a_stale_event_never_replaces_a_newer_cached_session(
    endpoints: Endpoints, local_stack: Stack
) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        current = await api.update_session(tokens, {"theme": "dark"})
        await _reached_everywhere(api, tokens.session_id, 2)
        client = aioredis.Redis.from_url(endpoints.redis)
        try:
            for version in (1, 2):  # older, and a second event claiming the version in force
                stale = {**current, "version": version, "data": {"theme": "stale"}}
                event = {"sid": tokens.session_id, "version": version, "kind": "updated"}
                message = json.dumps({**event, "session": stale})
                assert await client.publish(CHANNEL, message) >= 3  # every service hears
        finally:
            await client.aclose()
        await asyncio.sleep(0.2)  # ~7x the p99 propagation: "unchanged" cannot be polled for
        views = await _views(api, tokens.session_id)
    assert all(v is not None and (v["version"], v["data"]["theme"]) == (2, "dark") for v in views)


async def test_session_values_round_trip_unchanged(endpoints: Endpoints) -> None:
    """Lists, empty objects, big integers and floats come back as they were sent."""
    values = {"tags": [], "prefs": {}, "big": 12_345_678_901_234_567, "ratio": 0.1 + 0.2}
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        updated = await api.update_session(tokens, values)
        await _reached_everywhere(api, tokens.session_id, 2)
        views = await _views(api, tokens.session_id)
    assert {k: updated["data"][k] for k in values} == values
    assert all(v is not None and {k: v["data"][k] for k in values} == values for v in views)


async def test_an_update_reaches_only_the_streams_of_its_own_session(endpoints: Endpoints) -> None:
    """Two users, each connected: every push a stream gets is its own session's (A's
    second push is its own v3, not B's v2; B's first push is its own)."""
    async with ApexClient(endpoints) as api:
        a, b = await _new_session(api), await _new_session(api)
        async with (
            await connect(endpoints, a.access) as ws_a,
            await connect(endpoints, b.access) as ws_b,
        ):
            await receive(ws_a)
            await receive(ws_b)
            budget = budgets()["session_propagation_s"] * 8  # a busy machine: no flake
            pushes = []
            for tokens, ws, theme in ((a, ws_a, "a-first"), (b, ws_b, "b"), (a, ws_a, "a-next")):
                await api.update_session(tokens, {"theme": theme})
                pushes.append((await receive(ws, timeout=budget))["payload"])
    assert [(p["version"], p["data"]["theme"]) for p in pushes] == [
        (2, "a-first"),
        (2, "b"),
        (3, "a-next"),
    ]


async def _streams(api: ApexClient) -> int:
    return int((await gateway_stats(api))["lineages"])


async def test_an_ended_session_leaves_no_resumable_stream(
    endpoints: Endpoints, local_stack: Stack
) -> None:
    """A dropped connection's stream is kept for a resume; a logged-out session's is not."""
    async with ApexClient(endpoints) as api:
        tokens = await _new_session(api)
        before = await _streams(api)
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            assert await _streams(api) == before + 1
            await api.logout(tokens)
            await _closed_with_1008(ws, "logout")

        async def forgotten() -> bool:  # (older streams may expire meanwhile: at most)
            return await _streams(api) <= before

        await eventually(forgotten, 2)


async def test_a_lost_subscription_is_back_within_budget_and_pushes_again(
    endpoints: Endpoints, local_stack: Stack
) -> None:
    client = aioredis.Redis.from_url(endpoints.redis)
    try:
        (_, listening), *_ = await client.pubsub_numsub(CHANNEL)
        assert listening >= 3  # auth, backend and gateway follow the session events

        async def back() -> bool:
            (_, now), *_ = await client.pubsub_numsub(CHANNEL)
            return bool(now == listening)

        async with ApexClient(endpoints) as api:
            tokens = await _new_session(api)
            async with await connect(endpoints, tokens.access) as ws:
                await receive(ws)
                assert await client.client_kill_filter(_type="pubsub") >= listening
                await eventually(back, 1.0)  # every service resubscribes at once, not later
                await api.update_session(tokens, {"theme": "after"})
                pushed = await receive(ws, timeout=budgets()["session_propagation_s"] * 8)
    finally:
        await client.aclose()
    assert (pushed["type"], pushed["payload"]["data"]["theme"]) == ("session_updated", "after")
