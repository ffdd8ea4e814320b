"""Multi-database transaction coordination ($12K MRR): SQLite and Redis never disagree.

Buying credits writes the ledger (SQLite, the primary store) and the balance cache (Redis)
through an outbox: both or neither, even when the backend dies between the two writes, and
never twice, whatever the retries or the concurrency.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import httpx
import pytest

from apex.client import ApexClient, ApexError, Endpoints, Tokens
from apex.launcher import Stack
from suites.platform import eventually

pytestmark = pytest.mark.anyio


async def _buy(
    api: ApexClient, tokens: Tokens, amount: Any, key: str, **extra: Any
) -> dict[str, Any]:
    body = {"amount": amount, "idempotency_key": key, **extra}
    return dict(
        await api.call("POST", f"{api.ep.backend}/api/credits", json=body, headers=tokens.header)
    )


async def _balances(api: ApexClient, tokens: Tokens) -> dict[str, Any]:
    return dict(await api.call("GET", f"{api.ep.backend}/api/credits", headers=tokens.header))


async def test_a_purchase_writes_both_stores(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("buyer")
        bought = await _buy(api, tokens, 120, "first")
        again = await _buy(api, tokens, 120, "first")  # a client retry of the same purchase
        balances = await _balances(api, tokens)
    assert bought["created"] and not again["created"]
    assert bought["ledger_id"] == again["ledger_id"]
    assert balances == {"sqlite_balance": 120, "redis_balance": 120, "entries": 1, "pending": 0}


@pytest.mark.parametrize("amount", [-5, 0, "12", 10**9, None])
async def test_an_invalid_purchase_writes_neither(endpoints: Endpoints, amount: Any) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("invalid")
        with pytest.raises(ApexError) as refused:
            await _buy(api, tokens, amount, "bad")
        balances = await _balances(api, tokens)
    assert refused.value.status == 422
    assert balances == {"sqlite_balance": 0, "redis_balance": 0, "entries": 0, "pending": 0}


@pytest.mark.usefixtures("faults")
async def test_crash_between_the_writes_is_recovered_once(local_stack: Stack) -> None:
    backend = local_stack.services["backend"]
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("crash")
        await _buy(api, tokens, 100, "before")
        old_pid = backend.pid
        with pytest.raises((httpx.HTTPError, ApexError)):
            await _buy(api, tokens, 50, "dies", crash_after_commit=True)

        async def recovered() -> bool:
            try:
                return backend.pid != old_pid and (await _balances(api, tokens))["pending"] == 0
            except (httpx.HTTPError, ApexError):
                return False

        await eventually(recovered, 20, interval=0.05)
        balances = await _balances(api, tokens)
        retry = await _buy(api, tokens, 50, "dies")  # the client retries after the error
        final = await _balances(api, tokens)
    assert balances == {"sqlite_balance": 150, "redis_balance": 150, "entries": 2, "pending": 0}
    assert not retry["created"]
    assert final == balances


async def test_concurrent_purchases_keep_the_stores_consistent(endpoints: Endpoints) -> None:
    keys = [str(uuid.uuid4()) for _ in range(20)]
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("concurrent")
        await asyncio.gather(*(_buy(api, tokens, i + 1, keys[i % 20]) for i in range(30)))
        balances = await _balances(api, tokens)
    # the first writer of each key wins; duplicates of a key add nothing
    assert balances["entries"] == 20
    assert balances["sqlite_balance"] == balances["redis_balance"]
    assert balances["pending"] == 0


async def test_redis_outage_refuses_cleanly_and_recovers(local_stack: Stack) -> None:
    """With Redis stalled the purchase is refused (503, retryable) and neither store moves."""
    redis_proc = local_stack.redis.proc if local_stack.redis else None
    assert redis_proc is not None
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("outage")
        os.kill(redis_proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ApexError) as refused:
                await _buy(api, tokens, 70, "during-outage")
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)
        assert refused.value.status == 503
        assert (await _balances(api, tokens))["entries"] == 0
        await _buy(api, tokens, 70, "during-outage")
        balances = await _balances(api, tokens)
    assert balances == {"sqlite_balance": 70, "redis_balance": 70, "entries": 1, "pending": 0}
