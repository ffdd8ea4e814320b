"""PKCE (RFC 7636) S256 challenges, computed by Authlib, typed for the rest of Apex."""

from __future__ import annotations

from authlib.oauth2.rfc7636 import create_s256_code_challenge


def s256(verifier: str) -> str:
    """The S256 code challenge of `verifier`."""
    return str(create_s256_code_challenge(verifier))  # type: ignore[no-untyped-call]
