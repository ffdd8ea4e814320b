"""WebSocket auth handshake, complete flow ($18K MRR): sign-in -> JWT -> WebSocket -> session.

Every paying user reaches the agents through this handshake: OAuth (or password) sign-in,
a JWT in the Authorization header or the `jwt.` subprotocol, and a connection bound to the
user's session. Anything else (query-string, expired, tampered, unsigned or revoked tokens)
is refused with close code 1008.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import jwt
import pytest
import websockets

from apex.client import ApexClient, Endpoints, Tokens, ask, connect, query_of, receive
from apex.pkce import s256
from suites.platform import Platform

pytestmark = pytest.mark.anyio
CALLBACK = "/auth/oauth/callback"


async def _established(endpoints: Endpoints, tokens: Tokens, via: str) -> dict[str, object]:
    async with await connect(endpoints, tokens.access, via=via) as ws:
        frame = await receive(ws)
        assert frame["type"] == "connection_established"
        assert (await ask(ws, "usage"))[-1]["type"] == "agent_completed"
        payload: dict[str, object] = frame["payload"]
        return payload


@pytest.mark.parametrize("via", ["header", "subprotocol"])
async def test_oauth_sign_in_to_bound_websocket(endpoints: Endpoints, via: str) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await api.oauth_sign_in(f"oauth-{via}-{time.monotonic_ns()}@example.test")
        me = await api.me(tokens)
    hello = await _established(endpoints, tokens, via)
    assert hello["user_id"] == me["user_id"]
    assert hello["session_id"] == tokens.session_id


async def test_password_login_to_bound_websocket(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("password")
    hello = await _established(endpoints, tokens, "header")
    assert hello["session_id"] == tokens.session_id


async def test_wrong_state_is_refused(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        start = await api.http.get(
            f"{endpoints.auth}/auth/oauth/start", params={"login_hint": "state@example.test"}
        )
        code = query_of((await api.http.get(start.headers["location"])).headers["location"])
        forged = await api.http.get(
            f"{endpoints.auth}{CALLBACK}", params={"code": code["code"], "state": "attacker-state"}
        )
        missing = await api.http.get(f"{endpoints.auth}{CALLBACK}", params={"code": code["code"]})
    assert forged.status_code == missing.status_code == 400
    assert "state" in forged.json()["error"]


async def _exchange(
    http: httpx.AsyncClient, endpoints: Endpoints, code: str, verifier: str
) -> httpx.Response:
    return await http.post(
        f"{endpoints.idp}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "apex-auth",
            "redirect_uri": f"{endpoints.auth}{CALLBACK}",
            "code_verifier": verifier,
        },
    )


async def test_wrong_pkce_verifier_is_refused(endpoints: Endpoints) -> None:
    verifier = "v" * 64
    async with httpx.AsyncClient() as http:
        for attempt, expected in (("w" * 64, 400), (verifier, 200)):
            code = await _authorize(http, endpoints, s256(verifier))
            resp = await _exchange(http, endpoints, code, attempt)
            assert resp.status_code == expected, resp.text
        refused = await _exchange(
            http, endpoints, await _authorize(http, endpoints, s256("x" * 64)), "y" * 64
        )
    assert "PKCE" in refused.json()["error_description"]


async def _authorize(http: httpx.AsyncClient, endpoints: Endpoints, challenge: str) -> str:
    resp = await http.get(
        f"{endpoints.idp}/authorize",
        params={
            "response_type": "code",
            "client_id": "apex-auth",
            "state": "s",
            "redirect_uri": f"{endpoints.auth}{CALLBACK}",
            "login_hint": "pkce@example.test",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert resp.status_code == 302
    return query_of(resp.headers["location"])["code"]


async def test_token_refresh_keeps_the_user_connected(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("refresh")
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            fresh = await api.refresh(tokens)
            assert (await ask(ws, "usage after refresh"))[-1]["type"] == "agent_completed"
        hello = await _established(endpoints, fresh, "subprotocol")
    assert hello["session_id"] == tokens.session_id


async def test_concurrent_connections_stay_isolated(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, alice = await api.new_user("alice")
        _, bob = await api.new_user("bob")
        conns = [await connect(endpoints, t.access) for t in (alice, alice, bob)]
        try:
            hellos = [await receive(ws) for ws in conns]
            ids = {h["payload"]["connection_id"] for h in hellos}
            assert len(ids) == 3
            replies = await asyncio.gather(
                *(ask(ws, f"usage {i}") for i, ws in enumerate(conns[:2]))
            )
            for ws in conns:  # nobody receives a stream that is not theirs
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.3)
        finally:
            for ws in conns:
                await ws.close()
        bob_view = await api.http.get(
            f"{endpoints.backend}/api/threads/{replies[0][-1]['payload']['thread_id']}/messages",
            headers=bob.header,
        )
    threads = [r[-1]["payload"]["thread_id"] for r in replies]
    assert threads[0] != threads[1]
    assert bob_view.status_code == 404


def _unsigned(tokens: Tokens) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = tokens.access.split(".")[1]
    return f"{header.decode().rstrip('=')}.{payload}."


def _tampered(tokens: Tokens) -> str:
    head, payload, sig = tokens.access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{forged}.{sig}"


async def _assert_refused(endpoints: Endpoints, token: str, suffix: str = "") -> None:
    url = endpoints.gateway + suffix
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_bad_tokens_are_refused_with_1008(endpoints: Endpoints, platform: Platform) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("attacker")
        # refused even beside a valid header: a query-string token leaks into logs
        await _assert_refused(endpoints, tokens.access, f"?token={tokens.access}")
        await _assert_refused(endpoints, _tampered(tokens))
        await _assert_refused(endpoints, _unsigned(tokens))
        await _assert_refused(endpoints, tokens.refresh)
        if platform.jwt_secret:
            claims = jwt.decode(tokens.access, options={"verify_signature": False})
            claims["exp"] = int(time.time()) - 1
            await _assert_refused(endpoints, jwt.encode(claims, platform.jwt_secret, "HS256"))
        await api.logout(tokens)
        await _assert_refused(endpoints, tokens.access)
