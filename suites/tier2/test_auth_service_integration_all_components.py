"""Auth service integration across all components ($14K MRR): one identity, enforced everywhere.

Login, rotation (a reused refresh token revokes the family), logout, service-to-service
tokens, validation by the backend and the gateway, role checks, and every failure path
answering with the status code a client can act on.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import websockets

from apex.client import ApexClient, ApexError, Endpoints, Tokens, connect, gateway_http, receive
from suites.platform import Platform

pytestmark = pytest.mark.anyio


async def _refused_everywhere(api: ApexClient, tokens: Tokens) -> None:
    """Auth, backend and gateway all refuse these tokens."""
    me = await api.http.get(f"{api.ep.auth}/auth/me", headers=tokens.header)
    threads = await api.http.get(f"{api.ep.backend}/api/threads", headers=tokens.header)
    assert (me.status_code, threads.status_code) == (401, 401)
    async with await connect(api.ep, tokens.access) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_tokens_are_accepted_by_every_component(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("everywhere")
        me = await api.me(tokens)
        threads = await api.call("GET", f"{endpoints.backend}/api/threads", headers=tokens.header)
        async with await connect(endpoints, tokens.access) as ws:
            hello = await receive(ws)
    assert threads == {"threads": []}
    assert hello["payload"]["user_id"] == me["user_id"]


async def test_reused_refresh_token_revokes_the_whole_family(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, first = await api.new_user("family")
        second = await api.refresh(first)
        with pytest.raises(ApexError) as reuse:
            await api.refresh(first)  # a stolen, already used refresh token
        assert reuse.value.status == 401
        await _refused_everywhere(api, second)  # the legitimate newer pair dies too
        with pytest.raises(ApexError):
            await api.refresh(second)


async def test_logout_is_enforced_by_every_component(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("logout")
        await api.logout(tokens)
        await _refused_everywhere(api, tokens)
        with pytest.raises(ApexError):
            await api.refresh(tokens)


async def test_service_tokens_guard_internal_routes(endpoints: Endpoints) -> None:
    if not endpoints.service_secret:
        pytest.skip("needs APEX_SERVICE_TOKEN")
    async with ApexClient(endpoints) as api:
        _, user = await api.new_user("svc")
        service = await api.service_headers()
        path = f"/internal/sessions/{user.session_id}"
        for base in (endpoints.auth, endpoints.backend, gateway_http(endpoints)):
            assert (await api.http.get(base + path, headers=service)).status_code == 200
            assert (await api.http.get(base + path, headers=user.header)).status_code == 401
            assert (await api.http.get(base + path)).status_code == 401
        wrong = await api.http.post(
            f"{endpoints.auth}/auth/service-token",
            json={"client_id": "x", "client_secret": "guess"},
        )
        as_user = await api.http.get(f"{endpoints.auth}/auth/me", headers=service)
    assert (wrong.status_code, as_user.status_code) == (401, 401)


async def test_roles_are_checked_on_protected_endpoints(platform: Platform) -> None:
    if platform.stack is None:
        pytest.skip("needs the seeded demo admin of a launched platform")
    async with ApexClient(platform.endpoints) as api:
        _, user = await api.new_user("plain")
        admin = await api.login(*platform.stack.demo)
        url = f"{platform.endpoints.backend}/api/admin/overview"
        denied = await api.http.get(url, headers=user.header)
        allowed = await api.http.get(url, headers=admin.header)
    assert denied.status_code == 403
    assert allowed.status_code == 200 and allowed.json()["threads"] >= 0


def _failure_cases(email: str) -> dict[str, tuple[str, dict[str, Any], int]]:
    """name: (path, request arguments, the status a client can act on)."""
    return {
        "wrong password": (
            "/auth/login",
            {"json": {"email": email, "password": "wrong password!"}},
            401,
        ),
        "missing fields": ("/auth/login", {"json": {}}, 422),
        "not json": ("/auth/login", {"content": b"{oops"}, 422),
        "taken email": (
            "/auth/register",
            {"json": {"email": email, "password": "another password"}},
            409,
        ),
        "weak password": (
            "/auth/register",
            {"json": {"email": "weak@example.test", "password": "short"}},
            422,
        ),
        "garbage refresh": ("/auth/refresh", {"json": {"refresh_token": "garbage"}}, 401),
    }


async def test_failure_paths_answer_with_the_right_status(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        email, _ = await api.new_user("paths")
        cases = _failure_cases(email)
        codes = {
            name: (await api.http.post(endpoints.auth + path, **kwargs)).status_code
            for name, (path, kwargs, _) in cases.items()
        }
    assert codes == {name: expected for name, (_, _, expected) in cases.items()}


async def test_expired_and_foreign_tokens_are_refused_everywhere(platform: Platform) -> None:
    if not platform.jwt_secret:
        pytest.skip("needs APEX_JWT_SECRET to mint an expired token")
    async with ApexClient(platform.endpoints) as api:
        _, tokens = await api.new_user("expired")
        claims = jwt.decode(tokens.access, options={"verify_signature": False})
        expired = {**claims, "exp": int(time.time()) - 1}
        foreign = {**claims, "iss": "someone-else"}
        for bad in (expired, foreign):
            forged = jwt.encode(bad, platform.jwt_secret, algorithm="HS256")
            await _refused_everywhere(
                api, Tokens(access=forged, refresh="", session_id="", expires_in=0)
            )
        other_key = jwt.encode(claims, "not-the-key-" * 4, algorithm="HS256")
        await _refused_everywhere(
            api, Tokens(access=other_key, refresh="", session_id="", expires_in=0)
        )
