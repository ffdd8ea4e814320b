"""Configuration management and environment sync ($3K MRR): one configuration, everywhere.

Configuration is layered (defaults < APEX_CONFIG_FILE < APEX_CFG_<FIELD> variables) and
validated; a change published at runtime reaches every service with the next version, even
one whose subscription was down; an invalid change is refused with its reason and the
configuration in force stays; an out-of-date publication is ignored; a service whose file
is broken says why and picks the file up once it is fixed; secrets are kept and never shown.

The file layer is tested on a second platform (module-scoped) that reads a file; the
session's platform shows the defaults and its environment layer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from apex.client import ApexClient
from apex.launcher import Stack
from suites.platform import Platform, eventually, service_urls
from suites.tier3.config_support import (
    CONFIG_FILE,
    FILE_SECRET,
    configs,
    file_stack,
    monitored,
    publish,
    reached,
    timed_out_after,
)

pytestmark = pytest.mark.anyio
SECRET = "sk-live-DO-NOT-PRINT-4242"
MASK = "**********"
DEFAULTS = {
    "agent_timeout": 2.0,
    "maintenance_banner": "suite run",  # the session's environment layer
    "features": {},
    "support_email": "support@apex.local",
    "llm_api_key": "",
}
FROM_FILE = {
    "agent_timeout": 0.3,
    "maintenance_banner": "from the file",
    "features": {"beta": True},
    "support_email": "env@apex.test",  # APEX_CFG_SUPPORT_EMAIL over the file's
    "llm_api_key": MASK,
}


@pytest.fixture(scope="module")
def filed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if platform.stack is None:
        pytest.skip("launches a second platform with a configuration file")
    with file_stack(tmp_path_factory.mktemp("config")) as (stack, _):
        yield stack


@pytest.fixture
async def filed_api(filed: Stack) -> AsyncIterator[ApexClient]:
    async with ApexClient(filed.endpoints()) as api:
        await eventually(lambda: _loaded(api), 10, interval=0.05)
        yield api


@pytest.fixture
async def filed_redis(filed: Stack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(filed.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def _loaded(api: ApexClient) -> bool:
    """Every service has its configuration (a service loads it after it starts)."""
    headers, urls = await api.service_headers(), service_urls(api.ep).values()
    answers = [await api.http.get(f"{url}/internal/config", headers=headers) for url in urls]
    return all(a.status_code == 200 for a in answers)


def _everywhere(api: ApexClient, version: int, config: dict[str, Any]) -> dict[str, Any]:
    return {n: {"service": n, "version": version, "config": config} for n in service_urls(api.ep)}


async def test_every_layer_is_in_force_in_the_running_services(
    local_stack: Stack, filed_api: ApexClient
) -> None:
    """Runs first (file order): nothing is published yet, version 0 is the layers."""
    assert await configs(filed_api) == _everywhere(filed_api, 0, FROM_FILE)
    async with ApexClient(local_stack.endpoints()) as api:
        await eventually(lambda: _loaded(api), 10, interval=0.05)
        assert await configs(api) == _everywhere(api, 0, DEFAULTS)


async def test_agent_runs_use_the_timeout_in_force(filed: Stack, filed_api: ApexClient) -> None:
    _, tokens = await filed_api.new_user("timeout")
    assert await timed_out_after(filed.endpoints(), tokens.access) == (
        "optimization timed out after 0.3 s"  # the file's, not the 2 s default
    )
    resp = await publish(filed_api, {"agent_timeout": 0.5})
    await reached(filed_api, resp.json()["version"])
    assert await timed_out_after(filed.endpoints(), tokens.access) == (
        "optimization timed out after 0.5 s"  # a published change over the file
    )


async def test_a_change_reaches_every_service_with_the_next_version(
    filed_api: ApexClient, filed_redis: aioredis.Redis, record_property: Any
) -> None:
    version = (await configs(filed_api))["backend"]["version"]
    resp = await publish(filed_api, {"features": {"streaming": True}, "maintenance_banner": "v2"})
    body = resp.json()
    assert (resp.status_code, body["version"]) == (200, version + 1)
    record_property("config_propagation_s", round(await reached(filed_api, version + 1), 4))
    assert body["config"] | {"agent_timeout": None} == FROM_FILE | {
        "agent_timeout": None,
        "features": {"streaming": True},
        "maintenance_banner": "v2",
    }
    assert await configs(filed_api) == _everywhere(filed_api, version + 1, body["config"])
    (_, listeners), *_ = await filed_redis.pubsub_numsub("apex:config")
    assert listeners == 4  # every service holds its subscription


REFUSED = [
    ({"agent_timeout": 0}, "agent_timeout: Input should be greater than 0"),
    ({"agent_timeout": 30.5}, "agent_timeout: Input should be less than or equal to 30"),
    (
        {"agent_timeout": "soon"},
        "agent_timeout: Input should be a valid number, unable to parse string as a number",
    ),
    (
        {"maintenance_banner": "b" * 201},
        "maintenance_banner: String should have at most 200 characters",
    ),
    ({"unknown_key": 1}, "unknown_key: Extra inputs are not permitted"),
    (
        {"support_email": "not an email"},
        "support_email: String should match pattern '^[^@\\s]+@[^@\\s]+$'",
    ),
]


async def test_invalid_changes_are_refused_with_their_reasons(filed_api: ApexClient) -> None:
    for fine in ({"agent_timeout": 30}, {"maintenance_banner": "b" * 200}, {"agent_timeout": 0.5}):
        assert (await publish(filed_api, fine)).status_code == 200, fine  # the edges are valid
    version = (await reached_now(filed_api))["backend"]["version"]
    before = await configs(filed_api)
    for change, reason in REFUSED:
        resp = await publish(filed_api, change)
        assert (resp.status_code, resp.json()) == (
            422,
            {"error": f"invalid configuration: {reason}", "version_in_force": version},
        )
    resp = await publish(filed_api, ["not", "an", "object"])
    assert (resp.status_code, resp.json()) == (400, {"error": "the body must be a JSON object"})
    assert await configs(filed_api) == before


async def reached_now(api: ApexClient) -> dict[str, dict[str, Any]]:
    """The configurations once every service runs the latest version."""
    await reached(api, max(c["version"] for c in (await configs(api)).values()), timeout=3)
    return await configs(api)


async def test_a_change_published_while_subscriptions_are_down_arrives(
    filed_api: ApexClient, filed_redis: aioredis.Redis, filed: Stack
) -> None:
    async with monitored(filed.redis_url) as seen:
        killed, killed_at = time.monotonic(), time.time()
        await filed_redis.client_kill_filter(_type="pubsub")  # every subscription breaks
        resp = await publish(filed_api, {"maintenance_banner": "while away"})

        async def arrived() -> bool:
            found = await configs(filed_api)
            return all(c["config"]["maintenance_banner"] == "while away" for c in found.values())

        await eventually(arrived, 2, interval=0.01)
        took = time.monotonic() - killed
    assert resp.status_code == 200
    assert 0.18 <= took < 1.0  # at the re-read after the services' 0.2 s pause
    # after their pause (the client library's own instant resubscription comes before it),
    # the services subscribe first, then re-read: a change published in between is heard
    config = ("SUBSCRIBE apex:config", "GET config:current")
    following = [c for at, c in seen if c in config and at > killed_at + 0.1]
    assert following[0] == "SUBSCRIBE apex:config", following


async def _banner_stays(api: ApexClient, version: int, banner: str, seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        found = await configs(api)
        assert {(c["version"], c["config"]["maintenance_banner"]) for c in found.values()} == {
            (version, banner)
        }
        await asyncio.sleep(0.02)


async def test_an_out_of_date_publication_is_ignored(
    filed_api: ApexClient, filed_redis: aioredis.Redis
) -> None:
    current = await reached_now(filed_api)
    version, banner = (
        current["backend"]["version"],
        current["backend"]["config"]["maintenance_banner"],
    )
    raw = await filed_redis.get("config:current")
    assert raw is not None
    in_force = json.loads(raw)
    try:
        for stale, text in ((version, "replayed"), (version - 1, "older")):
            values = in_force["values"] | {"maintenance_banner": text}
            await filed_redis.set(
                "config:current", json.dumps({"version": stale, "values": values})
            )
            await filed_redis.publish("apex:config", json.dumps({"version": stale}))
            await _banner_stays(filed_api, version, banner, 0.2)
    finally:
        await filed_redis.set("config:current", raw)


async def test_a_broken_configuration_file_is_read_again_until_fixed(
    filed: Stack, filed_api: ApexClient
) -> None:
    file, idp = Path(filed.env["APEX_CONFIG_FILE"]), filed.services["idp"]
    url, old_pid = f"{idp.url}/internal/config", idp.pid
    assert old_pid is not None
    file.write_text("agent_timeout: -1\n", encoding="utf-8")
    try:
        os.kill(old_pid, signal.SIGKILL)  # it restarts, and reads the broken file
        assert await asyncio.to_thread(filed.wait_restarted, "idp", old_pid)
        headers = await filed_api.service_headers()

        async def refused() -> bool:
            resp = await filed_api.http.get(url, headers=headers)
            return resp.status_code == 503 and "invalid" in resp.json()["error"]

        await eventually(refused, 5, interval=0.02)
        answer = (await filed_api.http.get(url, headers=headers)).json()
        assert answer == {"error": BROKEN, "retry_after_s": 1}
    finally:
        file.write_text(CONFIG_FILE, encoding="utf-8")
    await eventually(lambda: _idp_at(filed, filed_api, url), 3, interval=0.02)


BROKEN = "the configuration is invalid (ConfigError: agent_timeout: Input should be greater than 0)"


async def _idp_at(stack: Stack, api: ApexClient, url: str) -> bool:
    """The idp runs the configuration version the backend runs."""
    headers = await api.service_headers()
    backend = f"{stack.services['backend'].url}/internal/config"
    version = (await api.call("GET", backend, headers=headers))["version"]
    resp = await api.http.get(url, headers=headers)
    return resp.status_code == 200 and resp.json()["version"] == version


async def test_secrets_are_kept_and_never_shown(
    filed: Stack, filed_api: ApexClient, filed_redis: aioredis.Redis, local_stack: Stack
) -> None:
    outputs = []
    for change in ({"llm_api_key": SECRET}, {"maintenance_banner": "after the secret"}):
        resp = await publish(filed_api, change)
        outputs.append(resp.text)
        await reached(filed_api, resp.json()["version"])
    stored = json.loads(await filed_redis.get("config:current") or "{}")
    assert stored["values"]["llm_api_key"] == SECRET  # a later change kept it
    found = await configs(filed_api)
    assert {c["config"]["llm_api_key"] for c in found.values()} == {MASK}
    outputs += [json.dumps(found), *await _health_pages(filed_api)]
    logs = [
        p.read_text(errors="replace") for s in (filed, local_stack) for p in s.workdir.glob("*.log")
    ]
    secrets = [SECRET, FILE_SECRET, *(s.env["APEX_JWT_SECRET"] for s in (filed, local_stack))]
    assert [s for s in secrets for text in outputs + logs if s in text] == []


async def _health_pages(api: ApexClient) -> list[str]:
    pages = [f"{url}/{page}" for url in service_urls(api.ep).values() for page in PAGES]
    return [(await api.http.get(page)).text for page in pages]


PAGES = ("health", "health/ready")
