"""WebSocket auth handshake, complete flow ($18K MRR): sign-in -> JWT -> WebSocket -> session.

Every paying user reaches the agents through this handshake: OAuth (or password) sign-in,
a JWT in the Authorization header or the `jwt.` subprotocol, and a connection bound to the
user's session. Anything else (query-string, expired, tampered, unsigned or revoked tokens)
is refused with close code 1008, for the reason it has.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import jwt
import pytest
import websockets
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from websockets.typing import Subprotocol

from apex.client import ApexClient, Endpoints, Tokens, ask, connect, query_of, receive
from apex.tls import tls
from suites.platform import Platform
from suites.tier1.handshake_helpers import (
    CALLBACK,
    QUERY_TOKEN_KEYS,
    assert_refused,
    authorize,
    authorize_params,
    exchange,
    forged,
    ping_of_size,
    refusal,
    reply,
    s256,
    tampered,
    unsigned,
    until_done,
)

pytestmark = pytest.mark.anyio


async def _established(endpoints: Endpoints, tokens: Tokens, via: str) -> dict[str, object]:
    async with await connect(endpoints, tokens.access, via=via) as ws:
        if via == "subprotocol":  # the token really travelled as the subprotocol
            assert ws.subprotocol == f"jwt.{tokens.access}"
        frame = await receive(ws)
        assert frame["type"] == "connection_established"
        assert (await ask(ws, "usage"))[-1]["type"] == "agent_completed"
        payload: dict[str, object] = frame["payload"]
        return payload


@pytest.mark.parametrize("via", ["header", "subprotocol"])
async def test_oauth_sign_in_to_bound_websocket(endpoints: Endpoints, via: str) -> None:
    hint = f"OAuth-{via}-{time.monotonic_ns()}@Example.Test"
    async with ApexClient(endpoints) as api:
        tokens = await api.oauth_sign_in(hint)
        me = await api.me(tokens)
    assert (me["email"], me["roles"]) == (hint.lower(), ["user"])
    hello = await _established(endpoints, tokens, via)
    assert hello["user_id"] == me["user_id"]
    assert hello["session_id"] == tokens.session_id


async def test_first_sign_ins_at_once_make_one_account(endpoints: Endpoints) -> None:
    """Four first OAuth sign-ins of a new user land together: every one is signed in, all
    as the same account (the account is created once, whoever wins the race)."""
    hint = f"together-{time.monotonic_ns()}@example.test"
    async with ApexClient(endpoints) as api:
        callbacks = [await api.oauth_callback(hint) for _ in range(4)]
        answers = await asyncio.gather(*(api.http.get(url) for url in callbacks))
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        users = {(await api.me(Tokens.parse(a.json())))["user_id"] for a in answers}
    assert len(users) == 1


async def test_password_login_to_bound_websocket(endpoints: Endpoints, platform: Platform) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("password")
        user_id = (await api.me(tokens))["user_id"]
    hello = await _established(endpoints, tokens, "header")
    assert set(hello) == {
        "connection_id", "user_id", "session_id", "session_version", "resume_id",
        "config_version", "banner", "last_seq",
    }  # fmt: skip
    assert (hello["user_id"], hello["session_id"]) == (user_id, tokens.session_id)
    assert (hello["session_version"], hello["last_seq"]) == (1, 0)  # a new session, new stream
    assert uuid.UUID(str(hello["connection_id"])) and hello["resume_id"] != hello["connection_id"]
    # the configuration in force reaches the client: its version and banner, as the
    # backend (another service) has them, and the banner the platform was started with
    async with ApexClient(endpoints) as api:
        url = f"{endpoints.backend}/internal/config"
        in_force = await api.call("GET", url, headers=await api.service_headers())
    assert hello["config_version"] == in_force["version"]
    assert hello["banner"] == in_force["config"]["maintenance_banner"]
    assert hello["banner"] == platform.setting("APEX_CFG_MAINTENANCE_BANNER", str(hello["banner"]))


async def test_subprotocol_token_is_the_one_used_and_is_echoed(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, alice = await api.new_user("alice-proto")
        _, bob = await api.new_user("bob-proto")
        alice_id = (await api.me(alice))["user_id"]
    jwt_alice = Subprotocol(f"jwt.{alice.access}")
    cases = [
        ([jwt_alice], bob, jwt_alice),  # the subprotocol wins over the header
        ([jwt_alice, Subprotocol("apex.v1")], bob, "apex.v1"),
        ([Subprotocol("jwt.")], alice, None),  # an empty jwt. offer is ignored
    ]
    for offered, header, chosen in cases:
        async with websockets.connect(
            endpoints.gateway,
            subprotocols=offered,
            open_timeout=5,
            additional_headers={"Authorization": f"Bearer {header.access}"},
        ) as ws:
            hello = (await receive(ws, timeout=5))["payload"]
            assert ws.subprotocol == chosen
        assert (hello["user_id"], hello["session_id"]) == (alice_id, alice.session_id)


@pytest.mark.parametrize("key", QUERY_TOKEN_KEYS)
async def test_every_query_string_token_key_is_refused(endpoints: Endpoints, key: str) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user(f"query-{key}")
    # refused beside a valid header: only the query string can be the reason
    await assert_refused(endpoints, tokens.access, f"?{key}={tokens.access}", "query string")
    async with websockets.connect(
        f"{endpoints.gateway}?lang=en",
        open_timeout=5,
        additional_headers={"Authorization": f"Bearer {tokens.access}"},
    ) as ws:  # any other query key is fine
        assert (await receive(ws, timeout=5))["type"] == "connection_established"


async def test_only_a_bearer_authorization_is_accepted(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("scheme")
    for headers, reason in (
        ({"Authorization": f"Basic {tokens.access}"}, "expected 'Author"),
        ({"Authorization": "Bearer   "}, "expected 'Author"),
        ({}, "missing Authorization header"),
    ):
        assert reason in await refusal(endpoints, headers)
    async with websockets.connect(
        endpoints.gateway,
        open_timeout=5,
        additional_headers={"Authorization": f"bearer {tokens.access}"},
    ) as ws:  # the scheme is case-insensitive
        assert (await receive(ws, timeout=5))["type"] == "connection_established"


async def test_wrong_state_is_refused(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        start = await api.http.get(
            f"{endpoints.auth}/auth/oauth/start", params={"login_hint": "state@example.test"}
        )
        code = query_of((await api.http.get(start.headers["location"])).headers["location"])
        bad = await api.http.get(
            f"{endpoints.auth}{CALLBACK}", params={"code": code["code"], "state": "attacker-state"}
        )
        missing = await api.http.get(f"{endpoints.auth}{CALLBACK}", params={"code": code["code"]})
    assert bad.status_code == missing.status_code == 400
    assert "state" in bad.json()["error"]


async def test_oauth_state_is_single_use(endpoints: Endpoints) -> None:
    hint = f"replay-{time.monotonic_ns()}@example.test"
    async with ApexClient(endpoints) as api:
        start = await api.http.get(
            f"{endpoints.auth}/auth/oauth/start", params={"login_hint": hint}
        )
        authorize_url = start.headers["location"]
        first = await api.http.get((await api.http.get(authorize_url)).headers["location"])
        # the same request again: a fresh, valid code for the same state and PKCE challenge,
        # so only the state's single use can refuse it
        replay = await api.http.get((await api.http.get(authorize_url)).headers["location"])
    assert first.status_code == 200, first.text
    assert (replay.status_code, replay.json()) == (400, {"error": "invalid or expired state"})


async def test_wrong_pkce_verifier_is_refused(endpoints: Endpoints) -> None:
    verifier = "v" * 64
    async with httpx.AsyncClient(verify=tls()) as http:
        for attempt, expected in (("w" * 64, 400), (verifier, 200)):
            code = await authorize(http, endpoints, s256(verifier))
            resp = await exchange(http, endpoints, code, attempt)
            assert resp.status_code == expected, resp.text
        refused = await exchange(
            http, endpoints, await authorize(http, endpoints, s256("x" * 64)), "y" * 64
        )
    assert "PKCE" in refused.json()["error_description"]


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"response_type": "token"}, "response_type must be code"),
        ({"client_id": "not-apex"}, "response_type must be code, for a registered client_id"),
        ({"redirect_uri": "http://evil.test/cb"}, "redirect_uri is not registered"),
        ({"code_challenge": ""}, "PKCE is required"),
        ({"code_challenge_method": "plain"}, "PKCE is required"),
        ({"state": ""}, "state is required"),
        ({"login_hint": "not-an-email"}, "login_hint must be an email"),
    ],
)
async def test_authorize_refuses_a_bad_request_without_redirecting(
    endpoints: Endpoints, override: dict[str, str], problem: str
) -> None:
    params = authorize_params(endpoints, s256("v" * 64), **override)
    async with httpx.AsyncClient(verify=tls()) as http:
        resp = await http.get(f"{endpoints.idp}/authorize", params=params)
    assert resp.status_code == 400 and "location" not in resp.headers
    assert resp.json()["error"] == "invalid_request"
    assert resp.json()["error_description"].startswith(problem)


async def test_authorization_codes_are_single_use_and_bound(endpoints: Endpoints) -> None:
    verifier, spent = "v" * 64, "unknown, used or expired code"
    async with httpx.AsyncClient(verify=tls()) as http:
        code = await authorize(http, endpoints, s256(verifier))
        assert (await exchange(http, endpoints, code, "w" * 64)).status_code == 400
        retry = await exchange(http, endpoints, code, verifier)  # spent even on failure
        code = await authorize(http, endpoints, s256(verifier))
        assert (await exchange(http, endpoints, code, verifier)).status_code == 200
        replay = await exchange(http, endpoints, code, verifier)
        code = await authorize(http, endpoints, s256(verifier))
        moved = await exchange(http, endpoints, code, verifier, redirect_uri="http://evil.test/")
        code = await authorize(http, endpoints, s256(verifier))
        other = await exchange(http, endpoints, code, verifier, client_id="someone-else")
    assert [r.json()["error_description"] for r in (retry, replay)] == [spent, spent]
    for resp in (moved, other):
        assert resp.status_code == 400
        assert resp.json()["error_description"] == "redirect_uri or client_id does not match"


async def test_id_token_is_rs256_signed_for_this_client(endpoints: Endpoints) -> None:
    verifier = "v" * 64
    async with httpx.AsyncClient(verify=tls()) as http:
        code = await authorize(
            http, endpoints, s256(verifier), nonce="n-123", login_hint="Mixed.Case@Example.Test"
        )
        body = (await exchange(http, endpoints, code, verifier)).json()
        keys = KeySet.import_key_set((await http.get(f"{endpoints.idp}/jwks")).json())
        info = await http.get(
            f"{endpoints.idp}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        nobody = await http.get(f"{endpoints.idp}/userinfo", headers={"Authorization": "Bearer x"})
    token = jose_jwt.decode(body["id_token"], keys, algorithms=["RS256"])
    claims = token.claims
    assert token.header["alg"] == "RS256"
    assert (claims["iss"], claims["aud"], claims["nonce"]) == (endpoints.idp, "apex-auth", "n-123")
    assert claims["email"] == claims["sub"] == "mixed.case@example.test"
    assert claims["exp"] - claims["iat"] == 300
    assert info.json()["email"] == "mixed.case@example.test" and nobody.status_code == 401


async def test_token_refresh_keeps_the_user_connected(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("refresh")
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            fresh = await api.refresh(tokens)
            assert (await ask(ws, "usage after refresh"))[-1]["type"] == "agent_completed"
        hello = await _established(endpoints, fresh, "subprotocol")
        # an access token is no refresh token (a different `token_type`, same signature)
        wrong = await api.http.post(
            f"{endpoints.auth}/auth/refresh", json={"refresh_token": fresh.access}
        )
    assert hello["session_id"] == tokens.session_id
    assert wrong.status_code == 401, wrong.text


async def test_token_lifetimes(platform: Platform) -> None:
    access_ttl = int(platform.setting("APEX_ACCESS_TOKEN_TTL", "900"))
    refresh_ttl = int(platform.setting("APEX_REFRESH_TOKEN_TTL", str(7 * 24 * 3600)))
    async with ApexClient(platform.endpoints) as api:
        _, tokens = await api.new_user("lifetime")
        fresh = await api.refresh(tokens)
    for pair in (tokens, fresh):  # a rotated pair lives exactly as long as the first
        access = jwt.decode(pair.access, options={"verify_signature": False})
        refresh = jwt.decode(pair.refresh, options={"verify_signature": False})
        assert pair.expires_in == access["exp"] - access["iat"] == access_ttl
        assert refresh["exp"] - refresh["iat"] == refresh_ttl
        assert access["nbf"] == access["iat"] and abs(access["iat"] - time.time()) < 60
        assert (access["token_type"], refresh["token_type"]) == ("access", "refresh")
        assert access["sid"] == refresh["sid"] == tokens.session_id
    assert fresh.access != tokens.access and fresh.refresh != tokens.refresh


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


async def test_bad_tokens_are_refused_with_1008(endpoints: Endpoints, platform: Platform) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("attacker")
        await assert_refused(endpoints, tampered(tokens), reason="InvalidSignatureError")
        await assert_refused(endpoints, unsigned(tokens), reason="InvalidAlgorithmError")
        await assert_refused(endpoints, tokens.refresh, reason="expected a access token")
        await assert_refused(endpoints, "not-a-jwt", reason="DecodeError")
        if platform.jwt_secret:
            await _assert_signed_claims_are_checked(endpoints, tokens, platform.jwt_secret)
        async with await connect(endpoints, tokens.access) as live:
            await receive(live)
            await api.logout(tokens)
            ended = await receive(live, timeout=2)  # an open connection is ended, too
        await assert_refused(endpoints, tokens.access, reason="token revoked")
    assert ended["payload"]["code"] == "session_ended"


async def _assert_signed_claims_are_checked(
    endpoints: Endpoints, tokens: Tokens, secret: str
) -> None:
    now = int(time.time())
    for changes, reason in (
        ({"exp": now - 1}, "ExpiredSignatureError"),
        ({"nbf": now + 60}, "ImmatureSignatureError"),
        ({"iss": "someone-else"}, "InvalidIssuerError"),
        ({"exp": None}, "MissingRequiredClaimError"),
        ({"jti": None}, "MissingRequiredClaimError"),
        ({"token_type": "service"}, "expected a access token"),
        ({"sid": "no-such-session"}, "session ended"),
    ):
        await assert_refused(endpoints, forged(tokens, secret, **changes), reason=reason)


BAD_FRAMES = [  # what a client may send by mistake, and the error code each one gets
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ('{"type": 7}', "invalid_frame"),
    ('{"type": "ping", "payload": [1]}', "invalid_frame"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "user_message", "payload": {"content": " "}}', "invalid_payload"),
    ('{"type": "stop_agent"}', "no_run"),
    (ping_of_size(64 * 1024 + 1), "frame_too_large"),
]


async def test_bad_frames_are_answered_and_the_connection_lives(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("frames")
    async with await connect(endpoints, tokens.access) as ws:
        hello = (await receive(ws))["payload"]
        assert (hello["last_seq"], hello["session_version"]) == (0, 1)
        codes = [(await reply(ws, text))["payload"].get("code") for text, _ in BAD_FRAMES]
        at_limit = await reply(ws, ping_of_size(64 * 1024))
        odd_keys = await reply(ws, json.dumps({"type": "ping", "payload": {"kind": "k"}}))
    assert codes == [code for _, code in BAD_FRAMES]
    assert at_limit["type"] == "pong"  # exactly 64 KiB is still allowed
    assert odd_keys == {"type": "pong", "payload": {"kind": "k"}}  # any key is echoed


async def test_one_run_at_a_time_and_stop_cancels_it(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("runs")
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        for kind in ("start_agent", "user_message"):  # start_agent is an alias
            await ws.send(json.dumps({"type": kind, "payload": {"content": "usage"}}))
        first = await until_done(ws)
        for kind in ("user_message", "stop_agent"):
            await ws.send(json.dumps({"type": kind, "payload": {"content": "usage"}}))
        stopped = await until_done(ws)
        after = await ask(ws, "usage again")
        await ws.send(json.dumps({"type": "stop_agent", "payload": {}}))
        idle = await receive(ws)  # a finished run is not stopped after the fact
    assert (idle["type"], idle["payload"].get("code")) == ("error", "no_run"), (idle, after)
    busy = [f for f in first if f["type"] == "error"]
    assert [b["payload"]["code"] for b in busy] == ["busy"] and "seq" not in busy[0]
    assert first[-1]["type"] == "agent_completed" and after[-1]["type"] == "agent_completed"
    assert stopped[-1]["type"] == "agent_error"
    assert stopped[-1]["payload"] == {
        "agent": "supervisor",
        "state": "failed",
        "error": "stopped by the user",
    }
