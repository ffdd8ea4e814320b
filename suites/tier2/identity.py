"""What the auth suite knows about identity on its own, written here rather than taken from
the platform: the claims tokens must carry, the Redis keys the access checks read, every
service's `/internal/*` routes, and tokens an attacker could mint."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
import websockets

from apex.client import ApexClient, Endpoints, Tokens, connect

ISSUER = "apex-auth"
ACCESS_TTL, REFRESH_TTL, SERVICE_TTL = 900, 7 * 24 * 3600, 300  # seconds
LOGIN_FAILURES, LOGIN_WINDOW_MS = 5, 300_000  # per email


def revoked_key(jti: str) -> str:
    return f"auth:revoked:{jti}"


def family_key(family: str) -> str:
    return f"auth:family-revoked:{family}"


def session_key(sid: str) -> str:
    return f"session:{sid}"


def failures_key(email: str) -> str:
    """The sign-in failure count of an email: a digest, never the address itself."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"auth:login-failures:{digest}"


def mint(secret: str, token_type: str, **claims: Any) -> str:
    """A token as the auth service would issue it, signed with `secret`."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": "svc:forged",
        "sid": "",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "token_type": token_type,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def internal_routes(sid: str) -> dict[str, list[tuple[str, str, dict[str, Any], int]]]:
    """Every service's `/internal/*` routes: (method, path, request, status for a service)."""
    shared = [
        ("GET", f"/internal/sessions/{sid}", {}, 200),
        ("GET", "/internal/sessions/no-such-session", {}, 404),
        ("GET", "/internal/cache/no-such-key", {}, 404),
        ("GET", "/internal/cache-log", {}, 200),
        ("GET", "/internal/config", {}, 200),
        ("POST", "/internal/fault", {"json": {"unhealthy": False}}, 200),  # the defaults
    ]
    return {
        "auth": shared,
        "backend": [
            *shared,
            ("PUT", "/internal/config", {"content": b"[]"}, 400),  # past the guard, no change
            ("GET", "/internal/metrics/summary", {}, 200),
        ],
        "gateway": [*shared, ("GET", "/internal/stats", {}, 200)],
    }


async def ws_refusal(endpoints: Endpoints, token: str) -> int | None:
    """The close code the gateway answers this token with (1008: policy violation)."""
    async with await connect(endpoints, token) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def refused_everywhere(api: ApexClient, token: str) -> tuple[int, int, int | None]:
    """(auth /me, backend /api/threads, gateway close code) for this access token."""
    header = {"Authorization": f"Bearer {token}"}
    me = await api.http.get(f"{api.ep.auth}/auth/me", headers=header)
    threads = await api.http.get(f"{api.ep.backend}/api/threads", headers=header)
    return me.status_code, threads.status_code, await ws_refusal(api.ep, token)


async def validate(api: ApexClient, **request: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.http.post(f"{api.ep.auth}/auth/validate", **request)
    return resp.status_code, resp.json() if resp.headers.get("content-type") else {}


async def login_status(http: httpx.AsyncClient, auth: str, email: Any, password: str) -> int:
    resp = await http.post(f"{auth}/auth/login", json={"email": email, "password": password})
    return resp.status_code


def bearer(tokens: Tokens | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens.access
    return {"Authorization": f"Bearer {token}"}
