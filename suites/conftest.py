"""The platform under test, started once per session through the dev launcher, or an
already running deployment named by APEX_AUTH_URL / APEX_BACKEND_URL / APEX_GATEWAY_URL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from apex.client import Endpoints
from apex.launcher import Stack, StackConfig
from apex.tls import tls
from suites.platform import Platform, service_urls

# Fault injection on; a short backend timeout and breaker cooldown so outages are seen fast.
SETTLE_SECONDS = 10.0
SUITE_ENV = {
    "APEX_FAULT_INJECTION": "1",
    "APEX_REDIS_TIMEOUT": "1.0",  # a stalled Redis is noticed in 1 s, not 2
    # a cheap argon2id cost (1 pass, 1 MiB): hundreds of sign-ups; the dummy hash for
    # unknown emails costs the same, so equal timing holds (tests/apex keeps the real cost)
    "APEX_ARGON2_TIME_COST": "1",
    "APEX_ARGON2_MEMORY_KIB": "1024",
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


@pytest.fixture(scope="session")
def broken_by() -> list[str]:
    """The test after which the platform did not become ready again, once there is one."""
    return []


@pytest.fixture(autouse=True)
def settled(
    platform: Platform, broken_by: list[str], request: pytest.FixtureRequest
) -> Iterator[None]:
    """After each test, wait until every service is ready again (a test may have stalled
    Redis, killed a service or tripped a breaker), so the next test starts from a healthy
    platform. A platform that does not recover is that test's error; every later test then
    fails at once, naming it, instead of waiting out the same outage again."""
    if broken_by:
        pytest.fail(f"the platform has not been ready since {broken_by[0]}", pytrace=False)
    yield
    waiting = _not_ready(platform, time.monotonic() + SETTLE_SECONDS)
    if waiting:
        broken_by.append(request.node.nodeid)
        pytest.fail(f"not ready {SETTLE_SECONDS} s after this test: {waiting}", pytrace=False)


def _not_ready(platform: Platform, deadline: float) -> list[str]:
    """The services still not ready at `deadline` (polled until then)."""
    urls = service_urls(platform.endpoints)
    with httpx.Client(verify=tls(), timeout=1.0) as http:
        while True:
            waiting = [name for name, url in urls.items() if not _ready(http, url)]
            if not waiting or time.monotonic() >= deadline:
                return waiting
            time.sleep(0.02)


def _ready(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/health/ready").status_code == 200
    except httpx.HTTPError:
        return False
