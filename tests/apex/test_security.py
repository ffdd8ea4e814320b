"""Attacks against the running platform: guessing passwords, finding accounts, abusing
the WebSocket, reading someone else's stream. Each must be refused, visibly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import statistics
import time
import uuid

import anyio
import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apex.client import ApexClient, Endpoints, connect, receive
from apex.launcher import Stack

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


async def _login(
    http: httpx.AsyncClient, endpoints: Endpoints, email: str, pw: str
) -> httpx.Response:
    return await http.post(f"{endpoints.auth}/auth/login", json={"email": email, "password": pw})


def _email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"


async def test_sign_in_is_throttled_after_repeated_failures(endpoints: Endpoints) -> None:
    """Five wrong passwords lock the email for the window (3 s here), even against the
    right password; an unknown email is throttled the same way, so 429 reveals nothing."""
    async with ApexClient(endpoints) as api, httpx.AsyncClient(timeout=10) as http:
        email, _ = await api.new_user("throttle")
        stranger = _email("nobody")
        for address in (email, stranger):
            codes = [
                (await _login(http, endpoints, address, "wrong!")).status_code for _ in range(5)
            ]
            assert codes == [401] * 5
        locked = await _login(http, endpoints, email, PASSWORD)
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
        other = await _login(http, endpoints, stranger, PASSWORD)
        assert other.status_code == 429 and other.json() == locked.json()
        await anyio.sleep(float(locked.headers["Retry-After"]) + 0.2)
        assert (await _login(http, endpoints, email, PASSWORD)).status_code == 200


async def _timed_failure(http: httpx.AsyncClient, endpoints: Endpoints, email: str) -> float:
    started = time.perf_counter()
    response = await _login(http, endpoints, email, "not the password")
    assert response.status_code == 401
    return time.perf_counter() - started


async def test_no_user_enumeration_through_messages_or_timing(endpoints: Endpoints) -> None:
    """A wrong password for a real account and any password for no account take the same
    path (argon2 verifies against a dummy hash), so their times are alike. Without that,
    an unknown email answers in about 1 ms against tens of ms: a ratio far outside 0.5-2."""
    async with ApexClient(endpoints) as api, httpx.AsyncClient(timeout=10) as http:
        known = [(await api.new_user("enum"))[0] for _ in range(7)]
        unknown = [_email("ghost") for _ in range(7)]
        for email in (known[0], unknown[0]):  # warm both paths once
            await _timed_failure(http, endpoints, email)
        real, ghost = [], []
        for mine, theirs in zip(known[1:], unknown[1:], strict=True):  # interleaved: a load
            real.append(await _timed_failure(http, endpoints, mine))  # burst on this machine
            ghost.append(await _timed_failure(http, endpoints, theirs))  # slows both alike
        bodies = {(await _login(http, endpoints, e, "x")).text for e in (known[1], unknown[1])}
    assert len(bodies) == 1
    ratio = statistics.median(ghost) / statistics.median(real)
    assert 0.5 < ratio < 2.0, (real, ghost)


async def test_an_oversized_frame_gets_an_error_and_the_connection_lives(
    endpoints: Endpoints,
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("big")
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "ping", "payload": {"pad": "x" * 100_000}}))
        error = await receive(ws)
        assert error["type"] == "error" and error["payload"]["code"] == "frame_too_large"
        await ws.send(json.dumps({"type": "ping", "payload": {"n": 1}}))
        assert await receive(ws) == {"type": "pong", "payload": {"n": 1}}
        for bad in ("[1, 2]", '{"type": 5}', '{"type": "ping", "payload": []}', "\u0000"):
            await ws.send(bad)
            assert (await receive(ws))["payload"]["code"] in ("invalid_frame", "invalid_json")


async def test_a_flood_is_answered_frame_by_frame_and_nothing_is_lost(endpoints: Endpoints) -> None:
    """500 pings at once: each gets a pong or a `rate_limited` error, never silence."""
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("flood")
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        for n in range(500):
            await ws.send(json.dumps({"type": "ping", "payload": {"n": n}}))
        answers = [await receive(ws) for _ in range(500)]
        await ws.send(json.dumps({"type": "ping", "payload": {"n": "after"}}))
        while (last := await receive(ws))["type"] != "pong":  # the bucket refills
            await anyio.sleep(0.1)
            await ws.send(json.dumps({"type": "ping", "payload": {"n": "after"}}))
    pongs = [a["payload"]["n"] for a in answers if a["type"] == "pong"]
    limited = [a for a in answers if a["payload"].get("code") == "rate_limited"]
    assert len(pongs) + len(limited) == 500 and limited and pongs == sorted(pongs)
    assert all(a["payload"]["retry_after_ms"] >= 1 for a in limited)
    assert last["payload"] == {"n": "after"}


async def test_one_user_cannot_resume_anothers_stream(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, alice = await api.new_user("alice")
        _, mallory = await api.new_user("mallory")
    async with (
        await connect(endpoints, alice.access) as a,
        await connect(endpoints, mallory.access) as m,
    ):
        resume_id = (await receive(a))["payload"]["resume_id"]
        await receive(m)
        await m.send(json.dumps({"type": "resume", "payload": {"resume_id": resume_id}}))
        refused = await receive(m)
    assert refused["type"] == "error" and refused["payload"]["code"] == "resume_unknown"


def _forgeries(secret: str, access: str) -> dict[str, str]:
    """Tokens an attacker could make from a real one: every one must be refused."""
    claims = jwt.decode(access, options={"verify_signature": False})
    now = int(time.time())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "not yet valid": jwt.encode({**claims, "nbf": now + 600}, secret, "HS256"),
        "wrong issuer": jwt.encode({**claims, "iss": "https://evil.test"}, secret, "HS256"),
        "RS256 by another key": jwt.encode(claims, rsa_key, "RS256"),
        "HS256 keyed with a public key": hmac_jwt(claims, pem),
        "no expiry": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, "HS256"),
    }


def hmac_jwt(claims: dict[str, object], key: bytes) -> str:
    """HS256 signed with `key` by hand: PyJWT refuses to use a PEM as an HMAC secret."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(sig)}"


async def test_forged_tokens_are_refused_by_auth_and_gateway(
    endpoints: Endpoints, stack: Stack
) -> None:
    async with ApexClient(endpoints) as api, httpx.AsyncClient(timeout=10) as http:
        _, tokens = await api.new_user("forger")
        forged = _forgeries(stack.env["APEX_JWT_SECRET"], tokens.access)
        for name, token in forged.items():
            me = await http.get(
                f"{endpoints.auth}/auth/me", headers={"Authorization": f"Bearer {token}"}
            )
            assert me.status_code == 401, name
            async with await connect(endpoints, token) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await receive(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, name
