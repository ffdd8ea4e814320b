"""Configuration from environment variables, with defaults; secrets are never logged."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    login_failures: int = 5
    discovery_ttl: float = 3.0
    login_window: float = 300.0
    self_url: str = ""
    config_file: str = ""
    redis_timeout: float = 2.0  # seconds a Redis command may take before it fails
    resume_window: float = 120.0  # seconds a dropped connection's stream waits for a resume

    @classmethod
    def from_env(cls) -> Settings:
        return cls(**{name: read(var, getattr(cls, name)) for name, (var, read) in _ENV.items()})


def _text(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0") == "1"


_ENV: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "redis_url": ("REDIS_URL", _text),
    "jwt_secret": ("APEX_JWT_SECRET", _text),
    "access_ttl": ("APEX_ACCESS_TOKEN_TTL", _int),
    "refresh_ttl": ("APEX_REFRESH_TOKEN_TTL", _int),
    "data_dir": ("APEX_DATA_DIR", _text),
    "auth_url": ("APEX_AUTH_URL", _text),
    "backend_url": ("APEX_BACKEND_URL", _text),
    "gateway_url": ("APEX_GATEWAY_URL", _text),
    "idp_url": ("APEX_IDP_URL", _text),
    "service_token": ("APEX_SERVICE_TOKEN", _text),
    "fault_injection": ("APEX_FAULT_INJECTION", _flag),
    "agent_timeout": ("APEX_AGENT_TIMEOUT", _float),
    "backend_timeout": ("APEX_BACKEND_TIMEOUT", _float),
    "breaker_threshold": ("APEX_BREAKER_THRESHOLD", _int),
    "breaker_cooldown": ("APEX_BREAKER_COOLDOWN", _float),
    "ws_rate": ("APEX_WS_RATE", _float),
    "ws_burst": ("APEX_WS_BURST", _float),
    "ws_user_rate": ("APEX_WS_USER_RATE", _int),
    "http_rate": ("APEX_HTTP_RATE", _int),
    "http_window": ("APEX_HTTP_WINDOW", _float),
    "login_failures": ("APEX_LOGIN_FAILURES", _int),
    "discovery_ttl": ("APEX_DISCOVERY_TTL", _float),
    "login_window": ("APEX_LOGIN_WINDOW", _float),
    "self_url": ("APEX_SELF_URL", _text),
    "config_file": ("APEX_CONFIG_FILE", _text),
    "redis_timeout": ("APEX_REDIS_TIMEOUT", _float),
    "resume_window": ("APEX_RESUME_WINDOW", _float),
}
