"""Access checks every service applies the same way: signature, type, revocation, session."""

from __future__ import annotations

import redis.asyncio as aioredis

from apex.sessions import session_key
from apex.tokens import ACCESS, Claims, TokenError, verify


def revoked_key(jti: str) -> str:
    return f"auth:revoked:{jti}"


def family_key(family: str) -> str:
    return f"auth:family-revoked:{family}"


async def check_access(client: aioredis.Redis, secret: str, token: str) -> Claims:
    """A valid access token whose jti is not revoked and whose session still exists."""
    claims = verify(secret, token, token_type=ACCESS)
    revoked, session = await client.mget([revoked_key(claims.jti), session_key(claims.sid)])
    if revoked:
        raise TokenError("token revoked")
    if claims.family and await client.exists(family_key(claims.family)):
        raise TokenError("token family revoked")
    if not session:
        raise TokenError("session ended")
    return claims
