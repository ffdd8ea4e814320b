"""The platform under test, started once per session through the dev launcher, or an
already running deployment named by APEX_AUTH_URL / APEX_BACKEND_URL / APEX_GATEWAY_URL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from apex.client import Endpoints, gateway_http
from apex.launcher import Stack, StackConfig
from suites.platform import Platform

# Fault injection on; a short backend timeout and breaker cooldown so outages are seen fast.
SETTLE_SECONDS = 15.0
SUITE_ENV = {
    "APEX_FAULT_INJECTION": "1",
    "APEX_BACKEND_TIMEOUT": "1.5",
    "APEX_BREAKER_THRESHOLD": "2",
    "APEX_BREAKER_COOLDOWN": "1.0",
    "APEX_HTTP_RATE": "60",
    "APEX_DISCOVERY_TTL": "1.5",  # a silent instance drops out of discovery after this
    "APEX_CFG_MAINTENANCE_BANNER": "suite run",  # the environment layer of the config
}


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    external = Endpoints.from_env()
    if external is not None:
        yield Platform(
            endpoints=external,
            stack=None,
            jwt_secret=os.environ.get("APEX_JWT_SECRET", ""),
            fault_injection=os.environ.get("APEX_FAULT_INJECTION") == "1",
        )
        return
    config = StackConfig(env=SUITE_ENV)
    with Stack(config) as stack:
        yield Platform(
            endpoints=stack.endpoints(),
            stack=stack,
            jwt_secret=stack.env["APEX_JWT_SECRET"],
            fault_injection=True,
        )


@pytest.fixture
def endpoints(platform: Platform) -> Endpoints:
    return platform.endpoints


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def local_stack(platform: Platform) -> Stack:
    if platform.stack is None:
        pytest.skip("needs the platform launched by this session, not an external deployment")
    return platform.stack


@pytest.fixture
def faults(platform: Platform) -> None:
    if not platform.fault_injection:
        pytest.skip("the platform under test does not allow fault injection")


@pytest.fixture(autouse=True)
def settled(platform: Platform) -> Iterator[None]:
    """After each test, wait until every service is ready again (a test may have stalled
    Redis, killed a service or tripped a breaker): the next test starts from a healthy
    platform instead of inheriting the last one's recovery."""
    yield
    urls = [platform.endpoints.auth, platform.endpoints.backend, gateway_http(platform.endpoints)]
    deadline = time.monotonic() + SETTLE_SECONDS
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline and not all(_ready(http, u) for u in urls):
            time.sleep(0.05)


def _ready(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/health/ready").status_code == 200
    except httpx.HTTPError:
        return False
