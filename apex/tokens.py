"""JWTs (PyJWT, HS256): issue and verify access / refresh tokens with type, issuer and jti."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from apex.settings import ISSUER

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
SERVICE = "service"


class TokenError(Exception):
    """The token is missing, malformed, expired, of the wrong type or badly signed."""


@dataclass(frozen=True, kw_only=True)
class Subject:
    """Who a token speaks for: user, session and refresh family."""

    sub: str
    sid: str
    family: str = ""
    email: str = ""
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Claims(Subject):
    jti: str
    token_type: str
    exp: int


def issue(secret: str, subject: Subject, *, token_type: str, ttl: int) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject.sub,
        "sid": subject.sid,
        "fam": subject.family,
        "email": subject.email,
        "roles": list(subject.roles),
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "token_type": token_type,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str, *, token_type: str) -> Claims:
    """Decode and check signature, algorithm, issuer, expiry, not-before and type."""
    try:
        data = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "sub", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    if data.get("token_type") != token_type:
        raise TokenError(f"expected a {token_type} token")
    return Claims(
        sub=str(data["sub"]),
        sid=str(data.get("sid", "")),
        jti=str(data["jti"]),
        token_type=token_type,
        exp=int(data["exp"]),
        family=str(data.get("fam", "")),
        email=str(data.get("email", "")),
        roles=tuple(data.get("roles", ())),
    )


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        raise TokenError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("expected 'Authorization: Bearer <token>'")
    return token.strip()
