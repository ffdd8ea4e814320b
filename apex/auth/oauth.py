"""OAuth 2.0 / OpenID Connect sign-in against the identity provider, with PKCE and state.

Authlib builds and parses the protocol messages (authorization URI, code response, PKCE
challenge); joserfc verifies the RS256 ID token against the provider's JWKS.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aioredis

from apex.auth.users import User, UserStore

CLIENT_ID = "apex-auth"
STATE_TTL = 300


class OAuthError(Exception):
    """Sign-in failed: bad state, refused code, invalid ID token."""


def account_for(users: UserStore, email: str) -> User:
    """The user the identity provider vouched for, created on their first sign-in (with no
    usable password). Two first sign-ins at once make one account: the loser of the race
    to create it reads the winner's."""
    user = users.by_email(email)
    if user is not None:
        return user
    try:
        return users.add(email, secrets.token_urlsafe(32))
    except sqlite3.IntegrityError:
        return users.by_email(email) or users.add(email, secrets.token_urlsafe(32))


def state_key(state: str) -> str:
    return f"auth:oauth-state:{state}"


@dataclass
class OAuthClient:
    idp_url: str
    redirect_uri: str
    redis: aioredis.Redis
    http: httpx.AsyncClient

    async def start(self, login_hint: str) -> str:
        """The authorization URL; state, nonce and the PKCE verifier stay server-side."""
        # Authlib and joserfc load on the first sign-in, not at every service start-up
        from authlib.common.security import generate_token  # noqa: PLC0415
        from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # noqa: PLC0415

        from apex.pkce import s256  # noqa: PLC0415

        state, nonce, verifier = generate_token(32), generate_token(24), generate_token(64)
        await self.redis.set(
            state_key(state), json.dumps({"verifier": verifier, "nonce": nonce}), ex=STATE_TTL
        )
        params = {
            "redirect_uri": self.redirect_uri,
            "scope": "openid email",
            "state": state,
            "nonce": nonce,
            "login_hint": login_hint,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        return str(prepare_grant_uri(f"{self.idp_url}/authorize", CLIENT_ID, "code", **params))

    async def finish(self, code: str, state: str) -> str:
        """Exchange the code (with the verifier) and return the verified email."""
        saved = await self.redis.getdel(state_key(state)) if state else None
        if not saved:
            raise OAuthError("invalid or expired state")
        stored = json.loads(saved)
        token = await self._exchange(code, stored["verifier"])
        return await self._verify_id_token(token["id_token"], stored["nonce"])

    async def _exchange(self, code: str, verifier: str) -> dict[str, Any]:
        resp = await self.http.post(
            f"{self.idp_url}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": CLIENT_ID,
                "code_verifier": verifier,
            },
        )
        try:
            data: dict[str, Any] = resp.json()
        except ValueError:
            data = {"error": f"HTTP {resp.status_code}"}
        if resp.status_code != 200 or "id_token" not in data:
            raise OAuthError(f"the identity provider refused the code: {data.get('error')}")
        return data

    async def _verify_id_token(self, id_token: str, nonce: str) -> str:
        from joserfc import jwt  # noqa: PLC0415
        from joserfc.errors import JoseError  # noqa: PLC0415
        from joserfc.jwk import KeySet  # noqa: PLC0415

        keys = KeySet.import_key_set((await self.http.get(f"{self.idp_url}/jwks")).json())
        try:
            token = jwt.decode(id_token, keys, algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.idp_url},
                aud={"essential": True, "value": CLIENT_ID},
                nonce={"essential": True, "value": nonce},
                email={"essential": True},
            ).validate(token.claims)
        except JoseError as exc:
            raise OAuthError(f"invalid ID token: {exc.error}") from None
        return str(token.claims["email"])
