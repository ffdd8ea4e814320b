"""One real platform for the platform's own tests, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apex.client import Endpoints
from apex.launcher import Stack, StackConfig


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    config = StackConfig(
        env={"APEX_FAULT_INJECTION": "1", "APEX_AGENT_TIMEOUT": "1.0", "APEX_LOGIN_WINDOW": "3"}
    )
    with Stack(config) as running:
        yield running


@pytest.fixture(scope="session")
def endpoints(stack: Stack) -> Endpoints:
    return stack.endpoints()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
