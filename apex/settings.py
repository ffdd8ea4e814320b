"""Configuration from environment variables, with defaults; secrets are never logged."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ACCESS_TTL_DEFAULT = 900
REFRESH_TTL_DEFAULT = 7 * 24 * 3600
ISSUER = "apex-auth"


def _positive(name: str, default: float, cast: type[int] | type[float]) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise ValueError(f"{name} must be {kind}, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be above 0, not {value}")
    return value


def _int(name: str, default: int) -> int:
    return int(_positive(name, default, int))


def _float(name: str, default: float) -> float:
    return float(_positive(name, default, float))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every service reads at start-up."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    jwt_secret: str = field(default="", repr=False)
    access_ttl: int = ACCESS_TTL_DEFAULT
    refresh_ttl: int = REFRESH_TTL_DEFAULT
    data_dir: str = "."
    auth_url: str = ""
    backend_url: str = ""
    gateway_url: str = ""
    idp_url: str = ""
    service_token: str = field(default="", repr=False)
    fault_injection: bool = False
    agent_timeout: float = 2.0
    backend_timeout: float = 10.0
    breaker_threshold: int = 3
    breaker_cooldown: float = 2.0
    ws_rate: float = 20.0
    ws_burst: float = 40.0
    ws_user_rate: int = 100
    http_rate: int = 100
    http_window: float = 1.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            redis_url=env.get("REDIS_URL", cls.redis_url),
            jwt_secret=env.get("APEX_JWT_SECRET", ""),
            access_ttl=_int("APEX_ACCESS_TOKEN_TTL", ACCESS_TTL_DEFAULT),
            refresh_ttl=_int("APEX_REFRESH_TOKEN_TTL", REFRESH_TTL_DEFAULT),
            data_dir=env.get("APEX_DATA_DIR", "."),
            auth_url=env.get("APEX_AUTH_URL", ""),
            backend_url=env.get("APEX_BACKEND_URL", ""),
            gateway_url=env.get("APEX_GATEWAY_URL", ""),
            idp_url=env.get("APEX_IDP_URL", ""),
            service_token=env.get("APEX_SERVICE_TOKEN", ""),
            fault_injection=env.get("APEX_FAULT_INJECTION") == "1",
            agent_timeout=_float("APEX_AGENT_TIMEOUT", 2.0),
            backend_timeout=_float("APEX_BACKEND_TIMEOUT", 10.0),
            breaker_threshold=_int("APEX_BREAKER_THRESHOLD", 3),
            breaker_cooldown=_float("APEX_BREAKER_COOLDOWN", 2.0),
            ws_rate=_float("APEX_WS_RATE", 20.0),
            ws_burst=_float("APEX_WS_BURST", 40.0),
            ws_user_rate=_int("APEX_WS_USER_RATE", 100),
            http_rate=_int("APEX_HTTP_RATE", 100),
            http_window=_float("APEX_HTTP_WINDOW", 1.0),
        )
