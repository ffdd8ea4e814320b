"""Configuration management and environment sync ($3K MRR): one configuration, everywhere.

Configuration is layered (defaults < file < environment) and validated; a change published
at runtime reaches every service with a version number; an invalid change is refused and
the old configuration stays in force; secrets never appear in logs or health output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apex.client import ApexClient, ApexError, Endpoints
from apex.launcher import Stack
from apex.runtime_config import ConfigError, layered
from suites.platform import budgets, eventually, service_urls

pytestmark = pytest.mark.anyio
SECRET = "sk-live-DO-NOT-PRINT-4242"


async def _configs(api: ApexClient) -> dict[str, dict[str, Any]]:
    headers = await api.service_headers()
    return {
        n: dict(await api.call("GET", f"{u}/internal/config", headers=headers))
        for n, u in service_urls(api.ep).items()
    }


async def _publish(api: ApexClient, changes: dict[str, Any]) -> dict[str, Any]:
    return dict(
        await api.call(
            "PUT",
            f"{api.ep.backend}/internal/config",
            json=changes,
            headers=await api.service_headers(),
        )
    )


async def _reached(api: ApexClient, version: int) -> float:
    """Seconds until every service runs configuration `version`."""

    async def everywhere() -> bool:
        return all(c["version"] == version for c in (await _configs(api)).values())

    return await eventually(everywhere, budgets()["session_propagation_s"])


def test_layers_defaults_then_file_then_environment(tmp_path: Path) -> None:
    file = tmp_path / "apex.yaml"
    file.write_text("agent_timeout: 4\nmaintenance_banner: from file\n")
    config = layered(
        file, {"APEX_CFG_MAINTENANCE_BANNER": "from env", "APEX_CFG_FEATURES": '{"beta": true}'}
    )
    assert (config.agent_timeout, config.maintenance_banner, config.features) == (
        4.0,
        "from env",
        {"beta": True},
    )
    assert layered(None, {}).agent_timeout == 2.0
    with pytest.raises(ConfigError, match="agent_timeout"):
        layered(None, {"APEX_CFG_AGENT_TIMEOUT": "-1"})


async def test_environment_layer_reaches_every_service(
    endpoints: Endpoints, local_stack: Stack
) -> None:
    """Runs before this module publishes anything (file order): version 0 is the layers."""
    async with ApexClient(endpoints) as api:
        configs = await _configs(api)
    assert {c["version"] for c in configs.values()} == {0}
    assert {c["config"]["maintenance_banner"] for c in configs.values()} == {"suite run"}


async def test_runtime_change_reaches_every_service_with_a_version(
    endpoints: Endpoints, record_property: Any
) -> None:
    async with ApexClient(endpoints) as api:
        published = await _publish(
            api, {"features": {"streaming": True}, "maintenance_banner": "v-next"}
        )
        took = await _reached(api, published["version"])
        configs = await _configs(api)
    record_property("config_propagation_s", round(took, 4))
    assert all(c["config"]["features"] == {"streaming": True} for c in configs.values())
    assert all(c["config"]["maintenance_banner"] == "v-next" for c in configs.values())


async def test_invalid_change_is_refused_and_the_old_one_stays(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        before = await _configs(api)
        for bad in (
            {"agent_timeout": 0},
            {"agent_timeout": "soon"},
            {"unknown_key": 1},
            {"support_email": "not an email"},
        ):
            with pytest.raises(ApexError) as refused:
                await _publish(api, bad)
            assert refused.value.status == 422
        after = await _configs(api)
    assert after == before


async def test_secrets_are_never_printed(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        published = await _publish(api, {"llm_api_key": SECRET})
        await _reached(api, published["version"])
        configs = await _configs(api)
        outputs = [str(published), str(configs)]
        for url in service_urls(api.ep).values():
            outputs.append((await api.http.get(f"{url}/health")).text)
            outputs.append((await api.http.get(f"{url}/health/ready")).text)
    logs = [p.read_text(errors="replace") for p in local_stack.workdir.glob("*.log")]
    assert all(c["config"]["llm_api_key"] == "**********" for c in configs.values())
    assert all(SECRET not in text for text in outputs + logs)
    assert all(local_stack.env["APEX_JWT_SECRET"] not in text for text in outputs + logs)
