"""The auth service (Starlette): register, login, refresh, logout, validate, me, OAuth."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from apex.access import check_access
from apex.auth.flows import Flows
from apex.auth.oauth import OAuthClient, OAuthError, account_for
from apex.auth.throttle import LoginThrottle
from apex.auth.users import User, UserStore
from apex.internal import session_routes
from apex.node import Node
from apex.service import error, make_app, make_redis, redis_check
from apex.sessions import SessionCache, SessionStore
from apex.settings import Settings
from apex.tls import tls
from apex.tokens import SERVICE, Subject, TokenError, bearer, issue

SERVICE_TTL = 300


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class AuthApp:
    """Holds the service's state; its methods are the route handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = make_redis(settings.redis_url, settings.redis_timeout)
        self.sessions = SessionStore(self.redis)
        self.cache = SessionCache(self.sessions)
        self.users = UserStore(Path(settings.data_dir) / "auth.db")
        self.flows = Flows(settings, self.redis, self.sessions)
        self.throttle = LoginThrottle(self.redis, settings.login_failures, settings.login_window)
        self.node = Node("auth", settings, self.redis, {"redis": redis_check(self.redis)})
        self.http = httpx.AsyncClient(verify=tls(), timeout=5.0)
        self.oauth = OAuthClient(
            settings.idp_url, f"{settings.auth_url}/auth/oauth/callback", self.redis, self.http
        )

    async def register(self, request: Request) -> Response:
        body = await _body(request)
        email, password = str(body.get("email", "")), str(body.get("password", ""))
        try:
            user = await run_in_threadpool(self.users.add, email, password)
        except ValueError as exc:
            return error(422, str(exc))
        except Exception:  # sqlite IntegrityError: the email is taken
            return error(409, "that email is already registered")
        return JSONResponse({"user_id": user.id, "email": user.email}, status_code=201)

    async def login(self, request: Request) -> Response:
        body = await _body(request)
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            return error(422, "email and password are required")
        wait = await self.throttle.wait(email)
        if wait:
            response = error(429, "too many failed sign-ins; try again later")
            response.headers["Retry-After"] = str(wait)
            return response
        user = await run_in_threadpool(self.users.authenticate, email, password)
        if user is None:
            await self.throttle.failed(email)
            return error(401, "invalid email or password")
        await self.throttle.succeeded(email)
        return JSONResponse(await self.flows.login(user))

    async def refresh(self, request: Request) -> Response:
        token = (await _body(request)).get("refresh_token")
        if not isinstance(token, str):
            return error(422, "refresh_token is required")
        try:
            return JSONResponse(await self.flows.refresh(token))
        except TokenError as exc:
            return error(401, str(exc))

    async def authorize(self, request: Request) -> User:
        """The user behind a valid access token, or TokenError."""
        claims = await check_access(
            self.redis, self.settings.jwt_secret, bearer(request.headers.get("authorization"))
        )
        user = await run_in_threadpool(self.users.get, claims.sub)
        if user is None:
            raise TokenError("unknown user")
        return user

    async def me(self, request: Request) -> Response:
        try:
            user = await self.authorize(request)
        except TokenError as exc:
            return error(401, str(exc))
        return JSONResponse({"user_id": user.id, "email": user.email, "roles": list(user.roles)})

    async def validate(self, request: Request) -> Response:
        token = (await _body(request)).get("token")
        if token is not None and not isinstance(token, str):
            return JSONResponse({"valid": False, "reason": "token must be a string"}, 422)
        token = token or request.headers.get("authorization", "")
        token = token.partition(" ")[2] if token.lower().startswith("bearer ") else token
        try:
            claims = await check_access(self.redis, self.settings.jwt_secret, str(token))
        except TokenError as exc:
            return JSONResponse({"valid": False, "reason": str(exc)}, status_code=401)
        return JSONResponse(
            {
                "valid": True,
                "user_id": claims.sub,
                "session_id": claims.sid,
                "email": claims.email,
                "roles": list(claims.roles),
                "expires_at": claims.exp,
            }
        )

    async def logout(self, request: Request) -> Response:
        try:
            token = bearer(request.headers.get("authorization"))
            claims = await check_access(self.redis, self.settings.jwt_secret, token)
        except TokenError as exc:
            return error(401, str(exc))
        await self.flows.logout(claims)
        return JSONResponse({"logged_out": True})

    async def service_token(self, request: Request) -> Response:
        """Client credentials for services: the shared APEX_SERVICE_TOKEN secret."""
        body = await _body(request)
        client_id, secret = body.get("client_id"), body.get("client_secret")
        expected = self.settings.service_token.encode()
        if not (
            isinstance(client_id, str)
            and client_id
            and isinstance(secret, str)
            and expected
            and hmac.compare_digest(secret.encode(), expected)
        ):
            return error(401, "invalid client credentials")
        subject = Subject(sub=f"svc:{client_id}", sid="", roles=("service",))
        token = issue(self.settings.jwt_secret, subject, token_type=SERVICE, ttl=SERVICE_TTL)
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": SERVICE_TTL}
        )

    async def oauth_start(self, request: Request) -> Response:
        hint = request.query_params.get("login_hint", "")
        if "@" not in hint:
            return error(422, "login_hint must be the email to sign in")
        url = await self.oauth.start(hint)
        if request.query_params.get("response") == "json":
            return JSONResponse({"authorization_url": url})
        return RedirectResponse(url, status_code=302)

    async def oauth_callback(self, request: Request) -> Response:
        q = request.query_params
        if "error" in q:
            return error(400, f"sign-in refused: {q['error']}")
        try:
            email = await self.oauth.finish(q.get("code", ""), q.get("state", ""))
        except OAuthError as exc:
            return error(400, str(exc))
        user = await run_in_threadpool(account_for, self.users, email)
        return JSONResponse(await self.flows.login(user))

    async def seed(self) -> None:
        email, password = _demo_credentials(self.settings)
        if (
            email
            and password
            and not await run_in_threadpool(self.users.authenticate, email, password)
        ):
            with contextlib.suppress(Exception):
                await run_in_threadpool(self.users.add, email, password, ("user", "admin"))

    async def start(self) -> None:
        await self.seed()
        await self.cache.start()
        await self.node.start()

    async def stop(self) -> None:
        await self.node.stop()
        await self.cache.stop()
        await self.http.aclose()
        await self.redis.aclose()

    def routes(self) -> list[Route]:
        return [
            Route("/auth/register", self.register, methods=["POST"]),
            Route("/auth/login", self.login, methods=["POST"]),
            Route("/auth/refresh", self.refresh, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/auth/validate", self.validate, methods=["POST"]),
            Route("/auth/me", self.me),
            Route("/auth/service-token", self.service_token, methods=["POST"]),
            Route("/auth/oauth/start", self.oauth_start),
            Route("/auth/oauth/callback", self.oauth_callback),
            *session_routes(self.cache, self.settings.jwt_secret),
            *self.node.routes(),
        ]


def _demo_credentials(settings: Settings) -> tuple[str, str]:
    return os.environ.get("APEX_DEMO_EMAIL", ""), os.environ.get("APEX_DEMO_PASSWORD", "")


def create_app(settings: Settings | None = None) -> Starlette:
    state = AuthApp(settings or Settings.from_env())
    return make_app(state, state.routes(), state.node.middleware())
