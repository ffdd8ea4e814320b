"""Routes only other services may call: guarded by a service token from the auth service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apex.service import error
from apex.sessions import SessionCache
from apex.tokens import SERVICE, TokenError, bearer, verify

Handler = Callable[[Request], Awaitable[Response]]


def service_only(secret: str, handler: Handler) -> Handler:
    """401 unless the caller presents a valid service token (users' tokens do not do)."""

    async def guarded(request: Request) -> Response:
        try:
            verify(secret, bearer(request.headers.get("authorization")), token_type=SERVICE)
        except TokenError as exc:
            return error(401, f"a service token is required ({exc})")
        return await handler(request)

    return guarded


def session_routes(cache: SessionCache, secret: str) -> list[Route]:
    """`/internal/sessions/{sid}`: this service's own cached view of a session."""

    async def view(request: Request) -> Response:
        session = await cache.get(request.path_params["sid"])
        return JSONResponse(session) if session else error(404, "no such session")

    return [Route("/internal/sessions/{sid}", service_only(secret, view))]
