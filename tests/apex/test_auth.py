"""The auth service over real HTTP: login, tokens, rotation, revocation, OAuth."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from apex.client import ApexClient, ApexError, Endpoints, query_of
from apex.launcher import Stack
from apex.settings import ISSUER

pytestmark = pytest.mark.anyio


async def test_login_me_and_wrong_password(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        email, tokens = await api.new_user()
        assert (await api.me(tokens))["email"] == email
        with pytest.raises(ApexError) as wrong:
            await api.login(email, "not the password")
        with pytest.raises(ApexError) as unknown:
            await api.login("nobody@example.test", "not the password")
    assert wrong.value.status == unknown.value.status == 401
    assert str(wrong.value).split("->")[1] == str(unknown.value).split("->")[1]


async def test_access_token_claims(endpoints: Endpoints, stack: Stack) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
    claims = jwt.decode(
        tokens.access, stack.env["APEX_JWT_SECRET"], algorithms=["HS256"], issuer=ISSUER
    )
    assert claims["token_type"] == "access"
    assert {"iss", "sub", "iat", "exp", "jti", "sid"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900


async def test_refresh_rotates_and_reuse_revokes_the_family(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, first = await api.new_user()
        second = await api.refresh(first)
        assert (await api.me(second))["user_id"]
        with pytest.raises(ApexError, match="reuse"):
            await api.refresh(first)
        for probe in (api.me(second), api.refresh(second)):
            with pytest.raises(ApexError) as refused:
                await probe
            assert refused.value.status == 401


async def test_logout_revokes_access_everywhere(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
        await api.logout(tokens)
        with pytest.raises(ApexError):
            await api.me(tokens)
        resp = await api.http.get(f"{endpoints.backend}/api/threads", headers=tokens.header)
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_bad_or_missing_tokens_get_401(endpoints: Endpoints, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{endpoints.auth}/auth/me", headers=headers)
    assert resp.status_code == 401


async def test_refresh_token_is_not_an_access_token(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
        resp = await api.http.get(
            f"{endpoints.auth}/auth/me", headers={"Authorization": f"Bearer {tokens.refresh}"}
        )
    assert resp.status_code == 401


async def test_expired_token_is_refused(endpoints: Endpoints, stack: Stack) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
        claims = jwt.decode(tokens.access, options={"verify_signature": False})
        claims["exp"] = int(time.time()) - 5
        expired = jwt.encode(claims, stack.env["APEX_JWT_SECRET"], algorithm="HS256")
        resp = await api.http.get(
            f"{endpoints.auth}/auth/me", headers={"Authorization": f"Bearer {expired}"}
        )
    assert resp.status_code == 401


async def test_oauth_sign_in_with_pkce(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        tokens = await api.oauth_sign_in("oauth-user@example.test")
        assert (await api.me(tokens))["email"] == "oauth-user@example.test"


async def test_oauth_wrong_state_and_reused_code_are_refused(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        start = await api.http.get(
            f"{endpoints.auth}/auth/oauth/start", params={"login_hint": "o2@example.test"}
        )
        callback = (await api.http.get(start.headers["location"])).headers["location"]
        code = query_of(callback)["code"]
        bad = await api.http.get(
            f"{endpoints.auth}/auth/oauth/callback", params={"code": code, "state": "forged"}
        )
        assert bad.status_code == 400
        assert "state" in bad.json()["error"]
        assert (await api.http.get(callback)).status_code == 200
        assert (await api.http.get(callback)).status_code == 400  # state and code are single use
