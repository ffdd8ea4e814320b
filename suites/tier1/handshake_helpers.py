"""What the handshake suite needs to speak OAuth, PKCE and the WebSocket's refusals itself,
independently of the code under test."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from apex.client import TERMINAL, Endpoints, Tokens, receive

CALLBACK = "/auth/oauth/callback"
QUERY_TOKEN_KEYS = ("token", "access_token", "jwt", "auth")  # written here, not imported


def s256(verifier: str) -> str:
    """RFC 7636 S256, computed here: apex.pkce must not judge apex.pkce."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_params(endpoints: Endpoints, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "apex-auth",
        "state": "s",
        "redirect_uri": f"{endpoints.auth}{CALLBACK}",
        "login_hint": "pkce@example.test",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


async def authorize(
    http: httpx.AsyncClient, endpoints: Endpoints, challenge: str, **extra: str
) -> str:
    params = authorize_params(endpoints, challenge, **extra)
    resp = await http.get(f"{endpoints.idp}/authorize", params=params)
    assert resp.status_code == 302
    return str(httpx.URL(resp.headers["location"]).params["code"])


async def exchange(
    http: httpx.AsyncClient, endpoints: Endpoints, code: str, verifier: str, **override: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "apex-auth",
        "redirect_uri": f"{endpoints.auth}{CALLBACK}",
        "code_verifier": verifier,
    }
    return await http.post(f"{endpoints.idp}/token", data={**form, **override})


async def refusal(endpoints: Endpoints, headers: dict[str, str], suffix: str = "") -> str:
    """The reason of the 1008 close this handshake gets."""
    async with websockets.connect(
        endpoints.gateway + suffix, additional_headers=headers, open_timeout=5
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)  # neither frame nor close: fail, not hang
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    return closed.value.rcvd.reason


async def assert_refused(
    endpoints: Endpoints, token: str, suffix: str = "", reason: str = ""
) -> None:
    got = await refusal(endpoints, {"Authorization": f"Bearer {token}"}, suffix)
    assert reason in got, got


def unsigned(tokens: Tokens) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = tokens.access.split(".")[1]
    return f"{header.decode().rstrip('=')}.{payload}."


def tampered(tokens: Tokens) -> str:
    head, payload, sig = tokens.access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{forged}.{sig}"


def forged(tokens: Tokens, secret: str, **changes: Any) -> str:
    """The access token's claims with `changes` (None drops a claim), signed with the real key."""
    claims = {**jwt.decode(tokens.access, options={"verify_signature": False}), **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, "HS256")


def ping_of_size(size: int) -> str:
    """A ping frame of exactly `size` bytes."""
    empty = json.dumps({"type": "ping", "payload": {"pad": ""}})
    return json.dumps({"type": "ping", "payload": {"pad": "x" * (size - len(empty))}})


async def reply(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(text)
    return await receive(ws, timeout=5)


async def until_done(ws: ClientConnection) -> list[dict[str, Any]]:
    """Frames up to the supervisor's terminal one (`ask` stops at the first error)."""
    frames = [await receive(ws)]
    while not (
        frames[-1]["type"] in TERMINAL and frames[-1]["payload"].get("agent") == "supervisor"
    ):
        frames.append(await receive(ws))
    return frames
