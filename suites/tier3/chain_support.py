"""Talking to the cache invalidation chain of a running platform: the admin's price writes,
every service's view of a cache entry and its invalidation log, slow subscribers, and raw
invalidation events as another writer would publish them (channel `apex:invalidate`,
JSON `{"id", "model", "version"}`)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import redis.asyncio as aioredis

from apex.client import ApexClient, Tokens
from suites.platform import eventually, service_urls


async def write(api: ApexClient, tokens: Tokens, model: str, price: float) -> dict[str, Any]:
    return dict(
        await api.call(
            "PUT",
            f"{api.ep.backend}/api/catalog/{model}",
            json={"price": price},
            headers=tokens.header,
        )
    )


async def write_response(
    api: ApexClient, tokens: Tokens, model: str, price: float
) -> httpx.Response:
    url = f"{api.ep.backend}/api/catalog/{model}"
    return await api.http.put(url, json={"price": price}, headers=tokens.header)


async def reads(api: ApexClient, key: str) -> dict[str, dict[str, Any]]:
    """Every service's answer for cache entry `key` (asked all at once), by service."""
    headers = await api.service_headers()
    urls = service_urls(api.ep)
    answers = await asyncio.gather(
        *(api.call("GET", f"{url}/internal/cache/{key}", headers=headers) for url in urls.values())
    )
    return {name: dict(answer) for name, answer in zip(urls, answers, strict=True)}


async def chain(api: ApexClient, model: str) -> dict[str, list[tuple[float, bool]]]:
    """(value, cached?) of price, plan and quote, read in that order, by service."""
    found: dict[str, list[tuple[float, bool]]] = {}
    for kind in ("price", "plan", "quote"):
        for name, entry in (await reads(api, f"{kind}:{model}")).items():
            found.setdefault(name, []).append((entry["value"], entry["cached"]))
    return found


async def logs(api: ApexClient) -> dict[str, list[dict[str, Any]]]:
    headers = await api.service_headers()
    urls = service_urls(api.ep)
    answers = await asyncio.gather(
        *(api.call("GET", f"{url}/internal/cache-log", headers=headers) for url in urls.values())
    )
    return {name: list(answer["log"]) for name, answer in zip(urls, answers, strict=True)}


async def fault(api: ApexClient, service: str, **body: Any) -> None:
    """Fault injection on one service: `invalidation_delay_ms`, `unhealthy` (all off: {})."""
    url = f"{service_urls(api.ep)[service]}/internal/fault"
    await api.call("POST", url, json=body, headers=await api.service_headers())


async def publish_raw(
    client: aioredis.Redis, model: str, version: int, times: int = 1
) -> list[str]:
    """`times` invalidation events, as a writer publishes them; their ids, in order."""
    ids = [secrets.token_hex(8) for _ in range(times)]
    pipe = client.pipeline(transaction=False)
    for event_id in ids:
        pipe.publish(
            "apex:invalidate", json.dumps({"id": event_id, "model": model, "version": version})
        )
    await pipe.execute()
    return ids


async def logged_everywhere(api: ApexClient, event_id: str, timeout: float = 2.0) -> None:
    """Wait until every service has handled invalidation `event_id`."""

    async def everywhere() -> bool:
        return all(any(e["id"] == event_id for e in log) for log in (await logs(api)).values())

    await eventually(everywhere, timeout, interval=0.01)
