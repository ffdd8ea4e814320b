"""Auth service integration across all components ($14K MRR): one identity, enforced everywhere.

Login (throttled per email), rotation (a reused refresh token revokes the family), logout,
validation, service-to-service tokens guarding every `/internal/*` route of every service,
each access check on its own, role checks, OAuth sign-in, and every failure path answering
with the status code a client can act on. Tokens are decoded and Redis is read here, not
through the auth service, to see what it really issued and stored.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import jwt
import pytest

from apex.client import ApexClient, ApexError, Endpoints, Tokens, connect, gateway_http, receive
from apex.launcher import Stack
from suites.platform import Platform, eventually, key_gone
from suites.tier2 import identity as idn
from suites.tier2.direct import claims, redis_of, sqlite_rows

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"  # what ApexClient.new_user registers
REFUSED = (401, 401, 1008)  # auth /me, backend /api/threads, gateway close code


async def _sign_up_and_in(api: ApexClient) -> tuple[str, Any, Tokens, Any]:
    """(email, the registration's answer, tokens, a second sign-in's raw answer)."""
    email = f"everywhere-{time.monotonic_ns()}@example.test"
    credentials = {"email": email, "password": PASSWORD}
    registered = await api.http.post(f"{api.ep.auth}/auth/register", json=credentials)
    tokens = await api.login(email, PASSWORD)
    again = await api.http.post(f"{api.ep.auth}/auth/login", json=credentials)
    return email, registered, tokens, again


async def test_login_issues_the_promised_tokens_accepted_everywhere(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, registered, tokens, again = await _sign_up_and_in(api)
        me = await api.me(tokens)
        threads = await api.call("GET", f"{api.ep.backend}/api/threads", headers=tokens.header)
        async with await connect(api.ep, tokens.access) as ws:
            hello = await receive(ws)
        session = json.loads(await client.get(idn.session_key(tokens.session_id)) or "{}")
        session_ttl = await client.ttl(idn.session_key(tokens.session_id))
    access, refresh = claims(tokens.access), claims(tokens.refresh)
    expected = {"iss": idn.ISSUER, "sub": me["user_id"], "sid": tokens.session_id}
    assert expected.items() <= access.items() and expected.items() <= refresh.items()
    assert access["fam"] == refresh["fam"] == tokens.session_id  # a family per sign-in
    assert (access["token_type"], access["email"], access["roles"]) == ("access", email, ["user"])
    assert access["exp"] - access["iat"] == idn.ACCESS_TTL and tokens.expires_in == idn.ACCESS_TTL
    assert refresh["token_type"] == "refresh" and refresh["exp"] - refresh["iat"] == idn.REFRESH_TTL
    assert (again.json()["token_type"], again.json()["expires_in"]) == ("Bearer", idn.ACCESS_TTL)
    assert again.json()["session_id"] != tokens.session_id  # every sign-in: a new session
    assert (session["user_id"], session["email"]) == (me["user_id"], email)
    assert idn.REFRESH_TTL - 60 < session_ttl <= idn.REFRESH_TTL
    assert (me["email"], me["roles"], threads) == (email, ["user"], {"threads": []})
    assert hello["payload"]["user_id"] == me["user_id"] and registered.json()["email"] == email
    assert registered.status_code == 201 and registered.json()["user_id"] == me["user_id"]


async def _fail(api: ApexClient, email: str, times: int) -> list[int]:
    return [
        await idn.login_status(api.http, api.ep.auth, email, "wrong password!")
        for _ in range(times)
    ]


async def test_sign_in_is_throttled_per_email_after_five_failures(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, _ = await api.new_user("throttled")
        started = time.time()
        failed = await _fail(api, email, idn.LOGIN_FAILURES)
        counted = await client.get(idn.failures_key(email))
        window_ms = await client.pttl(idn.failures_key(email))
        elapsed_ms = (time.time() - started) * 1000
        right = await api.http.post(
            f"{api.ep.auth}/auth/login", json={"email": f"  {email.upper()} ", "password": PASSWORD}
        )
        left_ms = await client.pttl(idn.failures_key(email))
    assert failed == [401] * idn.LOGIN_FAILURES  # the fifth failure is still a plain 401
    assert counted == str(idn.LOGIN_FAILURES)
    # the window started with the first failure, not with the last one
    assert idn.LOGIN_WINDOW_MS - elapsed_ms - 5 <= window_ms <= idn.LOGIN_WINDOW_MS, elapsed_ms
    assert right.status_code == 429  # even the right password, even spelled differently
    # the rest of the window, in whole seconds (read just before and just after)
    assert (
        math.ceil(left_ms / 1000)
        <= int(right.headers["retry-after"])
        <= math.ceil(window_ms / 1000)
    )


async def test_retry_after_at_the_window_end_is_one_second(local_stack: Stack) -> None:
    """The window's last moments: a client told to wait must not be told to wait longer."""
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, _ = await api.new_user("closing")
        await _fail(api, email, idn.LOGIN_FAILURES)
        key = idn.failures_key(email)
        await client.pexpire(key, 900)  # any rest under 1 s says "1"
        login = {"email": email, "password": PASSWORD}
        closing = await api.http.post(f"{api.ep.auth}/auth/login", json=login)
        await eventually(lambda: key_gone(client, key), 3.0, interval=0.02)
        after = await api.http.post(f"{api.ep.auth}/auth/login", json=login)
    assert (closing.status_code, closing.headers.get("retry-after")) == (429, "1")
    assert after.status_code == 200  # the window is over: the right password signs in


async def test_unknown_emails_are_throttled_like_known_ones(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, _ = await api.new_user("known")
        stranger = "nobody-" + email
        unknown = await _fail(api, stranger, idn.LOGIN_FAILURES + 1)
        keys = [k async for k in client.scan_iter(match="auth:login-failures:*")]
    assert unknown == [401] * idn.LOGIN_FAILURES + [429]  # no hint whether accounts exist
    assert idn.failures_key(stranger) in keys and not any(email in k for k in keys)


async def test_a_burst_of_failed_sign_ins_cannot_slip_past_the_limit(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, _ = await api.new_user("burst")
        burst = await asyncio.gather(
            *(idn.login_status(api.http, api.ep.auth, email, "wrong!") for _ in range(8))
        )
        counted = int(await client.get(idn.failures_key(email)) or 0)
        after = await idn.login_status(api.http, api.ep.auth, email, PASSWORD)
        # a count without a window (left by an older release, say): refused, briefly
        legacy = "legacy-" + email
        await client.set(idn.failures_key(legacy), str(idn.LOGIN_FAILURES))
        try:
            refused = await api.http.post(
                f"{api.ep.auth}/auth/login", json={"email": legacy, "password": PASSWORD}
            )
        finally:
            await client.delete(idn.failures_key(legacy))
    assert set(burst) <= {401, 429} and counted >= idn.LOGIN_FAILURES and after == 429
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")


async def test_a_successful_sign_in_clears_the_failures(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, _ = await api.new_user("forgetful")
        first = await _fail(api, email, idn.LOGIN_FAILURES - 1)
        ok = await idn.login_status(api.http, api.ep.auth, email, PASSWORD)
        cleared = await client.exists(idn.failures_key(email))
        again = await _fail(api, email, idn.LOGIN_FAILURES - 1)
        still_ok = await idn.login_status(api.http, api.ep.auth, email, PASSWORD)
        malformed = await idn.login_status(api.http, api.ep.auth, 5, PASSWORD)
    assert first == again == [401] * (idn.LOGIN_FAILURES - 1)
    assert (ok, cleared, still_ok, malformed) == (200, 0, 200, 422)


async def test_validate_reports_the_claims_of_a_valid_access_token(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        email, tokens = await api.new_user("validated")
        me = await api.me(tokens)
        answers = [
            await idn.validate(api, json={"token": tokens.access}),
            await idn.validate(api, headers={"Authorization": f"Bearer {tokens.access}"}),
            await idn.validate(api, headers={"Authorization": f"bearer {tokens.access}"}),
            await idn.validate(api, headers={"Authorization": tokens.access}),
        ]
    expected = {
        "valid": True,
        "user_id": me["user_id"],
        "session_id": tokens.session_id,
        "email": email,
        "roles": ["user"],
        "expires_at": claims(tokens.access)["exp"],
    }
    assert answers == [(200, expected)] * 4


async def test_validate_refuses_what_is_not_a_valid_access_token(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("invalid")
        service = (await api.service_headers())["Authorization"].split()[1]
        cases: dict[str, dict[str, Any]] = {
            "a refresh token": {"json": {"token": tokens.refresh}},
            "a service token": {"json": {"token": service}},
            "garbage": {"json": {"token": "garbage"}},
            "nothing": {"json": {}},
        }
        refused = {name: await idn.validate(api, **req) for name, req in cases.items()}
        malformed = [await idn.validate(api, json={"token": t}) for t in (123, ["x"], {"a": 1})]
        await api.logout(tokens)
        revoked = await idn.validate(api, json={"token": tokens.access})
    reasons = {
        name: (status, body["valid"], body["reason"]) for name, (status, body) in refused.items()
    }
    assert reasons == {
        "a refresh token": (401, False, "expected a access token"),
        "a service token": (401, False, "expected a access token"),
        "garbage": (401, False, "DecodeError"),
        "nothing": (401, False, "DecodeError"),
    }
    assert [(status, body["valid"]) for status, body in malformed] == [(422, False)] * 3
    assert revoked == (401, {"valid": False, "reason": "token revoked"})


async def test_each_access_check_refuses_on_its_own(local_stack: Stack) -> None:
    """Revoked token, revoked family, ended session, each alone (set in Redis here): every
    component refuses with the reason of that check; an untouched sign-in still works."""
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        email, control = await api.new_user("checks")
        sessions = {name: await api.login(email, PASSWORD) for name in ("jti", "family", "session")}
        await client.set(idn.revoked_key(claims(sessions["jti"].access)["jti"]), "test", ex=60)
        await client.set(idn.family_key(claims(sessions["family"].access)["fam"]), "test", ex=60)
        await client.delete(idn.session_key(sessions["session"].session_id))
        reasons = {
            n: (await idn.validate(api, json={"token": t.access}))[1].get("reason")
            for n, t in sessions.items()
        }
        everywhere = {n: await idn.refused_everywhere(api, t.access) for n, t in sessions.items()}
        still = (await idn.validate(api, json={"token": control.access}))[0]
    assert reasons == {
        "jti": "token revoked",
        "family": "token family revoked",
        "session": "session ended",
    }
    assert everywhere == dict.fromkeys(sessions, REFUSED) and still == 200


async def test_service_tokens_are_issued_to_services_only(endpoints: Endpoints) -> None:
    if not endpoints.service_secret:
        pytest.skip("needs APEX_SERVICE_TOKEN")
    async with ApexClient(endpoints) as api:
        issued = await api.call(
            "POST",
            f"{endpoints.auth}/auth/service-token",
            json={"client_id": "suite", "client_secret": endpoints.service_secret},
        )
        refusals = [
            (await api.http.post(f"{endpoints.auth}/auth/service-token", **request)).status_code
            for request in _bad_client_credentials(endpoints.service_secret)
        ]
        as_user = await idn.refused_everywhere(api, issued["access_token"])
    token = claims(issued["access_token"])
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", idn.SERVICE_TTL)
    assert (token["sub"], token["roles"], token["token_type"]) == (
        "svc:suite",
        ["service"],
        "service",
    )
    assert token["exp"] - token["iat"] == idn.SERVICE_TTL and token["sid"] == ""
    assert refusals == [401] * len(_bad_client_credentials(""))
    assert as_user == REFUSED  # a service is nobody's user


def _bad_client_credentials(secret: str) -> list[dict[str, Any]]:
    return [
        {"json": {"client_id": "suite", "client_secret": "guess"}},
        {"json": {"client_id": "", "client_secret": secret}},
        {"json": {"client_id": 5, "client_secret": secret}},
        {"json": {"client_id": "suite", "client_secret": 5}},
        {"json": {"client_id": "suite"}},
        {"content": b"{oops"},
    ]


async def _callers(api: ApexClient, user: Tokens) -> dict[str, dict[str, str]]:
    return {
        "nobody": {},
        "a user": idn.bearer(user),
        "a refresh token": idn.bearer(user.refresh),
        "a service token of another key": idn.bearer(idn.mint("x" * 32, "service")),
        "a service": await api.service_headers(),
    }


async def test_every_internal_route_of_every_service_needs_a_service_token(
    platform: Platform,
) -> None:
    if not platform.endpoints.service_secret:
        pytest.skip("needs APEX_SERVICE_TOKEN")
    ep = platform.endpoints
    bases = {"auth": ep.auth, "backend": ep.backend, "gateway": gateway_http(ep)}
    got, want = {}, {}
    async with ApexClient(ep) as api:
        _, user = await api.new_user("internal")
        callers = await _callers(api, user)
        for service, routes in idn.internal_routes(user.session_id).items():
            for method, path, request, status in routes:
                for caller, headers in callers.items():
                    url = bases[service] + path
                    resp = await api.http.request(method, url, headers=headers, **request)
                    got[(service, method, path, caller)] = resp.status_code
                    want[(service, method, path, caller)] = status if caller == "a service" else 401
    assert got == want


async def test_roles_are_checked_on_protected_endpoints(platform: Platform) -> None:
    if platform.stack is None:
        pytest.skip("needs the seeded demo admin of a launched platform")
    async with ApexClient(platform.endpoints) as api:
        _, user = await api.new_user("plain")
        admin = await api.login(*platform.stack.demo)
        url = f"{platform.endpoints.backend}/api/admin/overview"
        denied = await api.http.get(url, headers=user.header)
        allowed = await api.http.get(url, headers=admin.header)
        roles = (await api.me(admin))["roles"]
        counts = await sqlite_rows(
            platform.stack,
            "SELECT (SELECT COUNT(*) FROM threads), (SELECT COUNT(*) FROM agent_runs)",
        )
    assert denied.status_code == 403 and allowed.status_code == 200
    assert allowed.json() == {"threads": counts[0][0], "agent_runs": counts[0][1]}
    assert roles == ["user", "admin"] and claims(admin.access)["roles"] == ["user", "admin"]


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, first = await api.new_user("family")
        second = await api.refresh(first)
        with pytest.raises(ApexError) as reuse:
            await api.refresh(first)  # a stolen, already used refresh token
        revoked = await client.get(idn.family_key(claims(first.refresh)["fam"]))
        session = await client.exists(idn.session_key(first.session_id))
        everywhere = await idn.refused_everywhere(api, second.access)  # the newer pair too
        with pytest.raises(ApexError) as newer:
            await api.refresh(second)
    rotated, before = claims(second.refresh), claims(first.refresh)
    assert (rotated["sid"], rotated["fam"]) == (before["sid"], before["fam"]) and rotated[
        "jti"
    ] != before["jti"]
    assert second.session_id == first.session_id and second.access != first.access
    assert reuse.value.status == 401 and newer.value.status == 401
    assert (revoked, session, everywhere) == ("refresh token reuse", 0, REFUSED)


async def test_refresh_needs_a_live_session_and_a_refresh_token(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, tokens = await api.new_user("ended-session")
        await client.delete(idn.session_key(tokens.session_id))
        ended = await api.http.post(
            f"{api.ep.auth}/auth/refresh", json={"refresh_token": tokens.refresh}
        )
        _, other = await api.new_user("wrong-type")
        wrong_type = await api.http.post(
            f"{api.ep.auth}/auth/refresh", json={"refresh_token": other.access}
        )
    assert (ended.status_code, ended.json()["error"]) == (401, "session ended")
    assert wrong_type.status_code == 401


async def test_logout_is_enforced_by_every_component(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, tokens = await api.new_user("logout")
        logged_out = await api.http.post(f"{api.ep.auth}/auth/logout", headers=tokens.header)
        access = claims(tokens.access)
        revoked = await client.get(idn.revoked_key(access["jti"]))
        revoked_for = await client.ttl(idn.revoked_key(access["jti"]))
        family = await client.get(idn.family_key(access["fam"]))
        everywhere = await idn.refused_everywhere(api, tokens.access)
        again = await api.http.post(f"{api.ep.auth}/auth/logout", headers=tokens.header)
        with pytest.raises(ApexError) as refresh:
            await api.refresh(tokens)
    assert (logged_out.status_code, logged_out.json()) == (200, {"logged_out": True})
    assert (revoked, family, everywhere) == ("logout", "logout", REFUSED)
    assert (
        access["exp"] - int(time.time()) - 5 <= revoked_for <= access["exp"] - int(time.time()) + 1
    )
    assert again.status_code == 401 and refresh.value.status == 401


def _failure_cases(email: str) -> dict[str, tuple[str, dict[str, Any], int]]:
    """name: (path, request arguments, the status a client can act on)."""
    return {
        "wrong password": ("/auth/login", {"json": {"email": email, "password": "wrong!"}}, 401),
        "missing fields": ("/auth/login", {"json": {}}, 422),
        "not json": ("/auth/login", {"content": b"{oops"}, 422),
        "not UTF-8": ("/auth/login", {"content": b'{"email": "\xff"}'}, 422),
        "not an object": ("/auth/login", {"json": [email, PASSWORD]}, 422),
        "a number for an email": ("/auth/login", {"json": {"email": 1, "password": "x"}}, 422),
        "taken email": (
            "/auth/register",
            {"json": {"email": email, "password": "another one"}},
            409,
        ),
        "weak password": (
            "/auth/register",
            {"json": {"email": "w@example.test", "password": "short"}},
            422,
        ),
        "no email": ("/auth/register", {"json": {"password": "long enough password"}}, 422),
        "garbage refresh": ("/auth/refresh", {"json": {"refresh_token": "garbage"}}, 401),
        "no refresh token": ("/auth/refresh", {"json": {"refresh_token": 5}}, 422),
        "logout without a token": ("/auth/logout", {}, 401),
    }


async def test_failure_paths_answer_with_the_right_status(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        email, _ = await api.new_user("paths")
        cases = _failure_cases(email)
        codes = {
            name: (await api.http.post(endpoints.auth + path, **kwargs)).status_code
            for name, (path, kwargs, _) in cases.items()
        }
        me = await api.http.get(f"{endpoints.auth}/auth/me", headers={"Authorization": "Basic x"})
    assert codes == {name: expected for name, (_, _, expected) in cases.items()}
    assert me.status_code == 401


async def test_expired_and_foreign_tokens_are_refused_everywhere(platform: Platform) -> None:
    if not platform.jwt_secret:
        pytest.skip("needs APEX_JWT_SECRET to mint an expired token")
    async with ApexClient(platform.endpoints) as api:
        _, tokens = await api.new_user("expired")
        real = claims(tokens.access)
        forged = {
            "expired": jwt.encode({**real, "exp": int(time.time()) - 1}, platform.jwt_secret),
            "another issuer": jwt.encode({**real, "iss": "someone-else"}, platform.jwt_secret),
            "another key": jwt.encode(real, "not-the-key-" * 4),
        }
        refused = {name: await idn.refused_everywhere(api, t) for name, t in forged.items()}
    assert refused == dict.fromkeys(forged, REFUSED)


async def test_oauth_sign_in_and_its_refusals(endpoints: Endpoints) -> None:
    if not endpoints.idp:
        pytest.skip("needs the identity provider")
    start, callback = f"{endpoints.auth}/auth/oauth/start", f"{endpoints.auth}/auth/oauth/callback"
    async with ApexClient(endpoints) as api:
        me = await api.me(await api.oauth_sign_in("oauth-user@example.test"))
        as_json = await api.http.get(start, params={"login_hint": "a@x.test", "response": "json"})
        redirect = await api.http.get(start, params={"login_hint": "r@x.test"})
        no_email = await api.http.get(start, params={"login_hint": "nobody"})
        denied = await api.http.get(callback, params={"error": "access_denied"})
        forged = await api.http.get(callback, params={"code": "x", "state": "y"})
    assert me["email"] == "oauth-user@example.test"
    assert as_json.status_code == 200
    assert as_json.json()["authorization_url"].startswith(endpoints.idp)
    assert redirect.status_code == 302 and redirect.headers["location"].startswith(endpoints.idp)
    assert no_email.status_code == 422
    assert (denied.status_code, denied.json()["error"]) == (400, "sign-in refused: access_denied")
    assert (forged.status_code, forged.json()["error"]) == (400, "invalid or expired state")
