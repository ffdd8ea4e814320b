"""The dev identity provider: discovery, /authorize, /token (PKCE S256), JWKS, userinfo.

It signs in the user named by `login_hint` without a password form: a development
stand-in for a hosted identity provider, which cannot exist on this machine. The protocol
itself is real: codes are single-use and short-lived, redirect URIs must match, PKCE is
required, and ID tokens are RS256 JWTs (joserfc) verifiable against the JWKS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from apex.node import Node
from apex.pkce import s256
from apex.service import make_redis, redis_check
from apex.settings import Settings

CLIENT_ID = "apex-auth"
CODE_TTL = 60


@dataclass
class Grant:
    email: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    expires: float


def oauth_error(code: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


class IdentityProvider:
    def __init__(self, issuer: str, redirect_uris: set[str], node: Node) -> None:
        self.node = node
        self.issuer = issuer
        self.redirect_uris = redirect_uris
        self._key: Any = None
        self._key_lock = threading.Lock()
        self.codes: dict[str, Grant] = {}
        self.access: dict[str, str] = {}

    @property
    def key(self) -> Any:
        """The RS256 signing key, made on first use (joserfc and RSA key generation are slow
        enough to matter at start-up); `warm()` makes it in the background right after."""
        with self._key_lock:
            if self._key is None:
                from joserfc.jwk import RSAKey  # noqa: PLC0415

                kid = secrets.token_hex(8)  # pragma: no mutate - opaque: any length names it
                self._key = RSAKey.generate_key(2048, parameters={"kid": kid})
            return self._key

    async def warm(self) -> None:
        await asyncio.to_thread(lambda: self.key)

    async def discovery(self, request: Request) -> Response:
        i = self.issuer
        return JSONResponse(
            {
                "issuer": i,
                "authorization_endpoint": f"{i}/authorize",
                "token_endpoint": f"{i}/token",
                "jwks_uri": f"{i}/jwks",
                "userinfo_endpoint": f"{i}/userinfo",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        problem = self._check_authorize(q)
        if problem:
            return oauth_error("invalid_request", problem)
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(
            email=q["login_hint"].lower(),
            client_id=q["client_id"],
            redirect_uri=q["redirect_uri"],
            challenge=q["code_challenge"],
            nonce=q.get("nonce", ""),
            expires=time.time() + CODE_TTL,
        )
        params = {"code": code, "state": q.get("state", "")}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(params)}", status_code=302)

    def _check_authorize(self, q: Any) -> str:
        if q.get("response_type") != "code" or q.get("client_id") != CLIENT_ID:
            return "response_type must be code, for a registered client_id"
        if q.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri is not registered for this client"
        if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            return "PKCE is required: code_challenge with code_challenge_method=S256"
        if not q.get("state"):
            return "state is required"
        return "" if "@" in q.get("login_hint", "") else "login_hint must be an email"

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form.get("code", "")), None)  # single use, even on failure
        if grant is None or grant.expires < time.time():
            return oauth_error("invalid_grant", "unknown, used or expired code")
        if (
            form.get("redirect_uri") != grant.redirect_uri
            or form.get("client_id") != grant.client_id
        ):
            return oauth_error("invalid_grant", "redirect_uri or client_id does not match")
        verifier = str(form.get("code_verifier", ""))
        if not verifier or s256(verifier) != grant.challenge:
            return oauth_error("invalid_grant", "PKCE verification failed")
        return JSONResponse(self._tokens(grant))

    def _tokens(self, grant: Grant) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "sub": grant.email,
            "email": grant.email,
            "email_verified": True,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
        }
        from joserfc import jwt  # noqa: PLC0415

        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        access = secrets.token_urlsafe(24)
        self.access[access] = grant.email
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
            "scope": "openid email",
        }

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").partition(" ")[2]
        email = self.access.get(token)
        if email is None:
            return oauth_error("invalid_token", "unknown access token", 401)
        return JSONResponse({"sub": email, "email": email, "email_verified": True})

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo),
            *self.node.routes(),
        ]


def create_app() -> Starlette:
    issuer = os.environ.get("APEX_IDP_URL", "http://127.0.0.1")
    callback = os.environ.get("APEX_AUTH_URL", "http://127.0.0.1") + "/auth/oauth/callback"
    settings = Settings.from_env()
    client = make_redis(settings.redis_url, settings.redis_timeout)
    node = Node("idp", settings, client, {"redis": redis_check(client)})  # it needs Redis too
    idp = IdentityProvider(issuer, {callback}, node)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await idp.node.start()
        warm = asyncio.create_task(idp.warm())
        yield
        warm.cancel()
        await idp.node.stop()
        await client.aclose()

    app = Starlette(routes=idp.routes(), lifespan=lifespan, middleware=idp.node.middleware())
    app.state.apex = idp
    return app
