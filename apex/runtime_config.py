"""Runtime configuration: defaults < file < environment, validated with pydantic, and
published at runtime to every service with a version number.

An invalid change is refused and the configuration in force stays; secrets are SecretStr
and are shown as `**********` wherever the configuration is printed or served.
"""

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

CHANNEL = "apex:config"
CURRENT = "config:current"
VERSION = "config:version"
ENV_PREFIX = "APEX_CFG_"


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_timeout: float = Field(2.0, gt=0, le=30)
    maintenance_banner: str = Field("", max_length=200)
    features: dict[str, bool] = Field(default_factory=dict)
    support_email: str = Field("support@apex.local", pattern=r"^[^@\s]+@[^@\s]+$")
    llm_api_key: SecretStr = SecretStr("")


class ConfigError(ValueError):
    """A configuration layer or change that does not validate; says which field and why."""


def describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
    )


def layered(file: Path | None = None, env: dict[str, str] | None = None) -> RuntimeConfig:
    """Defaults, then the YAML file, then APEX_CFG_<FIELD> variables (JSON or plain text)."""
    values: dict[str, Any] = {}
    if file is not None:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        values.update(loaded if isinstance(loaded, dict) else {})
    for name, raw in (env if env is not None else dict(os.environ)).items():
        if name.startswith(ENV_PREFIX):
            values[name[len(ENV_PREFIX) :].lower()] = _parse_env(raw)
    return validate(values)


def _parse_env(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def validate(values: dict[str, Any]) -> RuntimeConfig:
    try:
        return RuntimeConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def dump(config: RuntimeConfig, reveal: bool = False) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    if reveal:
        data["llm_api_key"] = config.llm_api_key.get_secret_value()
    return data


def public(config: RuntimeConfig) -> dict[str, Any]:
    """What may be shown anywhere: every secret masked."""
    return dump(config)


class ConfigView:
    """A service's configuration in force, following published changes."""

    def __init__(self, client: aioredis.Redis, base: RuntimeConfig) -> None:
        self.redis, self.config, self.version = client, base, 0

    async def refresh(self) -> None:
        raw = await self.redis.get(CURRENT)
        if raw:
            data = json.loads(raw)
            if int(data["version"]) > self.version:
                self.config, self.version = validate(data["values"]), int(data["version"])

    async def follow(self) -> None:
        """Subscribe, then read what is in force, then refresh at each announcement: in
        this order a change published meanwhile is not lost (it is read, or heard)."""
        while True:
            with contextlib.suppress(Exception):
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(**{CHANNEL: self._announced})
                    await self.refresh()
                    await pubsub.run()
            await asyncio.sleep(0.2)

    async def _announced(self, message: dict[str, Any]) -> None:
        await self.refresh()


async def publish(
    client: aioredis.Redis, current: RuntimeConfig, changes: dict[str, Any]
) -> tuple[int, RuntimeConfig]:
    """Validate `changes` on top of `current`; store and announce it with a new version."""
    merged = validate({**dump(current, reveal=True), **changes})
    version = int(await client.incr(VERSION))
    await client.set(CURRENT, json.dumps({"version": version, "values": dump(merged, reveal=True)}))
    await client.publish(CHANNEL, json.dumps({"version": version}))
    return version, merged
