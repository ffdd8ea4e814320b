"""A typed client for the platform: what the suites and the project's tests talk through.

`Endpoints` comes from a launched `Stack` or from the APEX_*_URL variables of an already
running deployment, so the same tests run against either.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from apex.tls import tls

TERMINAL = ("agent_completed", "agent_error")


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    auth: str
    backend: str
    gateway: str
    idp: str = ""
    redis: str = ""
    service_secret: str = ""

    @classmethod
    def from_env(cls) -> Endpoints | None:
        env = os.environ
        if not (env.get("APEX_AUTH_URL") and env.get("APEX_GATEWAY_URL")):
            return None
        return cls(
            auth=env["APEX_AUTH_URL"],
            backend=env.get("APEX_BACKEND_URL", ""),
            gateway=env["APEX_GATEWAY_URL"],
            idp=env.get("APEX_IDP_URL", ""),
            redis=env.get("REDIS_URL", ""),
            service_secret=env.get("APEX_SERVICE_TOKEN", ""),
        )


@dataclass(frozen=True, kw_only=True)
class Tokens:
    access: str
    refresh: str
    session_id: str
    expires_in: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Tokens:
        return cls(
            access=data["access_token"],
            refresh=data["refresh_token"],
            session_id=data["session_id"],
            expires_in=int(data["expires_in"]),
        )

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


class ApexError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text[:200]}"
        )
        self.status = response.status_code


class ApexClient:
    """HTTP calls to auth and backend; raises ApexError on any non-2xx answer."""

    def __init__(self, endpoints: Endpoints, timeout: float = 10.0) -> None:
        self.ep = endpoints
        self.http = httpx.AsyncClient(verify=tls(), timeout=timeout)
        self._service: str = ""

    async def __aenter__(self) -> ApexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def call(self, method: str, url: str, **kwargs: Any) -> Any:
        resp = await self.http.request(method, url, **kwargs)
        if resp.status_code >= 300:
            raise ApexError(resp)
        return resp.json()

    async def register(self, email: str, password: str) -> dict[str, Any]:
        body = {"email": email, "password": password}
        return dict(await self.call("POST", f"{self.ep.auth}/auth/register", json=body))

    async def login(self, email: str, password: str) -> Tokens:
        body = {"email": email, "password": password}
        return Tokens.parse(await self.call("POST", f"{self.ep.auth}/auth/login", json=body))

    async def new_user(self, prefix: str = "user") -> tuple[str, Tokens]:
        """Register a fresh user and log in; returns (email, tokens)."""
        email = f"{prefix}-{time.monotonic_ns()}@example.test"
        await self.register(email, "correct horse battery")
        return email, await self.login(email, "correct horse battery")

    async def refresh(self, tokens: Tokens) -> Tokens:
        body = {"refresh_token": tokens.refresh}
        return Tokens.parse(await self.call("POST", f"{self.ep.auth}/auth/refresh", json=body))

    async def logout(self, tokens: Tokens) -> None:
        await self.call("POST", f"{self.ep.auth}/auth/logout", headers=tokens.header)

    async def me(self, tokens: Tokens) -> dict[str, Any]:
        return dict(await self.call("GET", f"{self.ep.auth}/auth/me", headers=tokens.header))

    async def oauth_sign_in(self, email: str) -> Tokens:
        """The browser's part of the authorization-code flow, redirect by redirect."""
        return Tokens.parse(await self.call("GET", await self.oauth_callback(email)))

    async def oauth_callback(self, email: str) -> str:
        """The flow up to the identity provider's redirect back to auth (not followed)."""
        start = await self.http.get(
            f"{self.ep.auth}/auth/oauth/start", params={"login_hint": email}
        )
        return _location(await self.http.get(_location(start)))

    async def update_session(self, tokens: Tokens, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(
            await self.call(
                "PATCH", f"{self.ep.backend}/api/session", json=changes, headers=tokens.header
            )
        )

    async def service_headers(self) -> dict[str, str]:
        """A service token from the auth service (client credentials), fetched once."""
        if not self._service:
            body = {"client_id": "apex-tests", "client_secret": self.ep.service_secret}
            data = await self.call("POST", f"{self.ep.auth}/auth/service-token", json=body)
            self._service = data["access_token"]
        return {"Authorization": f"Bearer {self._service}"}

    async def session_view(self, base_url: str, sid: str) -> dict[str, Any] | None:
        resp = await self.http.get(
            f"{base_url}/internal/sessions/{sid}", headers=await self.service_headers()
        )
        return dict(resp.json()) if resp.status_code == 200 else None

    async def messages(self, tokens: Tokens, thread_id: str) -> list[dict[str, Any]]:
        url = f"{self.ep.backend}/api/threads/{thread_id}/messages"
        return list((await self.call("GET", url, headers=tokens.header))["messages"])


def _location(resp: httpx.Response) -> str:
    if resp.status_code not in (302, 303, 307):
        raise ApexError(resp)
    return resp.headers["location"]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def gateway_http(endpoints: Endpoints) -> str:
    """The gateway's HTTP base URL (for /health) from its ws:// URL."""
    return endpoints.gateway.replace("ws://", "http://", 1).removesuffix("/ws")


async def connect(endpoints: Endpoints, token: str, *, via: str = "header") -> ClientConnection:
    """A WebSocket to the gateway, the token in the Authorization header or subprotocol."""
    if via == "subprotocol":
        return await websockets.connect(
            endpoints.gateway,
            subprotocols=[f"jwt.{token}"],  # type: ignore[list-item]
            open_timeout=5,
        )
    return await websockets.connect(
        endpoints.gateway, open_timeout=5, additional_headers={"Authorization": f"Bearer {token}"}
    )


async def receive(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def ask(
    ws: ClientConnection, content: str, timeout: float = 10.0, **extra: Any
) -> list[dict[str, Any]]:
    """Send a user_message; return every frame up to the supervisor's terminal frame."""
    await ws.send(json.dumps({"type": "user_message", "payload": {"content": content, **extra}}))
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await receive(ws, max(0.01, deadline - time.monotonic()))
        frames.append(frame)
        payload = frame.get("payload", {})
        if frame["type"] in TERMINAL and payload.get("agent") == "supervisor":
            return frames
        if frame["type"] == "error":
            return frames
