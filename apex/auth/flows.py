"""Token flows: login, refresh with rotation and reuse detection, logout."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from apex.access import family_key, revoked_key
from apex.auth.users import User
from apex.sessions import SessionStore
from apex.settings import Settings
from apex.tokens import ACCESS, REFRESH, Claims, Subject, TokenError, issue, verify


def used_key(jti: str) -> str:
    return f"auth:refresh-used:{jti}"


@dataclass
class Flows:
    settings: Settings
    redis: aioredis.Redis
    sessions: SessionStore

    async def login(self, user: User) -> dict[str, Any]:
        session = await self.sessions.create(
            user_id=user.id, email=user.email, ttl=self.settings.refresh_ttl
        )
        return self.pair(
            Subject(
                sub=user.id,
                sid=session["sid"],
                family=session["sid"],
                email=user.email,
                roles=user.roles,
            )
        )

    def pair(self, subject: Subject) -> dict[str, Any]:
        s = self.settings
        return {
            "access_token": issue(s.jwt_secret, subject, token_type=ACCESS, ttl=s.access_ttl),
            "refresh_token": issue(s.jwt_secret, subject, token_type=REFRESH, ttl=s.refresh_ttl),
            "token_type": "Bearer",
            "expires_in": s.access_ttl,
            "session_id": subject.sid,
        }

    async def refresh(self, token: str) -> dict[str, Any]:
        """Rotate: each refresh token works once; a reused one revokes its whole family."""
        claims = verify(self.settings.jwt_secret, token, token_type=REFRESH)
        if await self.redis.exists(family_key(claims.family)):
            raise TokenError("token family revoked")
        first_use = await self.redis.set(
            used_key(claims.jti), "1", nx=True, ex=self.settings.refresh_ttl
        )
        if not first_use:
            await self.revoke_family(claims, reason="refresh token reuse")
            raise TokenError("refresh token reuse detected: the session is revoked")
        if await self.sessions.get(claims.sid) is None:
            raise TokenError("session ended")
        return self.pair(claims)

    async def revoke_family(self, claims: Claims, reason: str) -> None:
        await self.redis.set(family_key(claims.family), reason, ex=self.settings.refresh_ttl)
        await self.sessions.delete(claims.sid, reason=reason)

    async def logout(self, claims: Claims) -> None:
        ttl = max(1, claims.exp - int(time.time()))
        await self.redis.set(revoked_key(claims.jti), "logout", ex=ttl)
        await self.revoke_family(claims, reason="logout")
