"""Multi-database transaction coordination ($12K MRR): SQLite and Redis never disagree.

Buying credits writes the ledger (SQLite, the primary store) and the balance cache (Redis)
through an outbox: both or neither, even when the backend dies between the two writes or
Redis stalls or refuses the write, and never twice, whatever the retries or the concurrency.
Every check reads both stores directly (the ledger and outbox tables, `credits:{user_id}`)
besides what the backend reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from apex.client import ApexClient, ApexError, Tokens
from apex.launcher import Stack
from suites.platform import eventually
from suites.tier2.direct import (
    failed_calls,
    redis_of,
    sqlite_rows,
    sqlite_script,
    user_id,
    writes_paused,
)

pytestmark = pytest.mark.anyio
LEDGER = "SELECT id, amount, idempotency_key FROM ledger WHERE user_id = ? ORDER BY id"
OUTBOX = "SELECT payload, delivered_at IS NOT NULL FROM outbox WHERE user_id = ? ORDER BY id"
EMPTY: dict[str, Any] = {"ledger": [], "outbox": [], "redis": None}


async def _buy(
    api: ApexClient, tokens: Tokens, amount: Any, key: Any, **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {"amount": amount, "idempotency_key": key, **extra}
    resp = await api.http.post(f"{api.ep.backend}/api/credits", json=body, headers=tokens.header)
    return resp.status_code, dict(resp.json())


async def _reported(api: ApexClient, tokens: Tokens) -> dict[str, Any]:
    return dict(await api.call("GET", f"{api.ep.backend}/api/credits", headers=tokens.header))


async def _stores(stack: Stack, uid: str) -> dict[str, Any]:
    """Both stores as they are, read without the backend."""
    ledger = await sqlite_rows(stack, LEDGER, (uid,))
    outbox = await sqlite_rows(stack, OUTBOX, (uid,))
    async with redis_of(stack) as client:
        cached = await client.get(f"credits:{uid}")
    return {
        "ledger": [tuple(row) for row in ledger],
        "outbox": [(json.loads(payload), bool(done)) for payload, done in outbox],
        "redis": cached,
    }


def _report(balance: int, entries: int, pending: int = 0) -> dict[str, int]:
    return {
        "sqlite_balance": balance,
        "redis_balance": balance,
        "entries": entries,
        "pending": pending,
    }


async def test_a_purchase_writes_both_stores_once(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("buyer")
        uid = user_id(tokens)
        assert await _reported(api, tokens) == _report(0, 0)
        first = await _buy(api, tokens, 120, "first")
        again = await _buy(api, tokens, 120, "first")  # a client retry of the same purchase
        stored = await _stores(local_stack, uid)
        more = await _buy(api, tokens, 30, "second")
        assert await _reported(api, tokens) == _report(150, 2)
        after = await _stores(local_stack, uid)
    ledger_id = first[1]["ledger_id"]
    assert (first[0], first[1]["created"], again[0], again[1]["created"]) == (201, True, 200, False)
    assert again[1] == {**first[1], "created": False}  # the same purchase, nothing added
    assert stored == {
        "ledger": [(ledger_id, 120, "first")],
        "outbox": [({"ledger_id": ledger_id, "user_id": uid, "amount": 120}, True)],
        "redis": "120",
    }
    assert first[1] == {"ledger_id": ledger_id, "created": True, **_report(120, 1)}
    assert more[0] == 201 and more[1]["ledger_id"] == after["ledger"][1][0] != ledger_id
    assert after["redis"] == "150" and [a for _, a, _ in after["ledger"]] == [120, 30]


REFUSED_AMOUNTS = [-5, 0, 10**6 + 1, 10**9, "12", None, True, 1.5]
REFUSED_KEYS = ["", "k" * 129, 5, None]


async def test_purchase_bounds_write_nothing_out_of_range(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("bounds")
        refused = [
            (await _buy(api, tokens, a, f"bad-{i}"))[0] for i, a in enumerate(REFUSED_AMOUNTS)
        ]
        refused += [(await _buy(api, tokens, 7, key))[0] for key in REFUSED_KEYS]
        nothing = await _stores(local_stack, user_id(tokens))
        accepted = [
            (await _buy(api, tokens, amount, key))[0]
            for amount, key in ((1, "min"), (10**6, "max"), (5, "k" * 128))
        ]
        stored = await _stores(local_stack, user_id(tokens))
        reported = await _reported(api, tokens)
    assert refused == [422] * (len(REFUSED_AMOUNTS) + len(REFUSED_KEYS))
    assert nothing == EMPTY
    assert accepted == [201, 201, 201]
    assert [(a, k) for _, a, k in stored["ledger"]] == [(1, "min"), (10**6, "max"), (5, "k" * 128)]
    assert stored["redis"] == "1000006" and reported == _report(1_000_006, 3)


async def test_idempotency_keys_belong_to_one_user(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, alice = await api.new_user("alice")
        _, bob = await api.new_user("bob")
        a1 = await _buy(api, alice, 10, "same")
        b1 = await _buy(api, bob, 20, "same")  # the same key, another user: another purchase
        a2 = await _buy(api, alice, 99, "same")  # a retry: the first purchase stands
        stores = [await _stores(local_stack, user_id(t)) for t in (alice, bob)]
    assert (a1[0], b1[0], a2[0]) == (201, 201, 200)
    assert a2[1]["ledger_id"] == a1[1]["ledger_id"] != b1[1]["ledger_id"]
    assert [s["redis"] for s in stores] == ["10", "20"]
    assert [s["ledger"] for s in stores] == [
        [(a1[1]["ledger_id"], 10, "same")],
        [(b1[1]["ledger_id"], 20, "same")],
    ]


async def test_concurrent_retries_of_one_key_apply_once(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("race")
        answers = await asyncio.gather(*(_buy(api, tokens, 25, "race") for _ in range(12)))
        stored = await _stores(local_stack, user_id(tokens))
    assert sorted(status for status, _ in answers) == [200] * 11 + [201]
    ledger_id = stored["ledger"][0][0]
    assert {body["ledger_id"] for _, body in answers} == {ledger_id}
    assert stored == {
        "ledger": [(ledger_id, 25, "race")],
        "outbox": [({"ledger_id": ledger_id, "user_id": user_id(tokens), "amount": 25}, True)],
        "redis": "25",
    }


async def test_concurrent_purchases_keep_the_stores_consistent(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("concurrent")
        # 20 purchases (amounts 1..20), ten of them sent twice at the same time
        orders = [(f"key-{i % 20}", i % 20 + 1) for i in range(30)]
        answers = await asyncio.gather(*(_buy(api, tokens, a, k) for k, a in orders))
        stored = await _stores(local_stack, user_id(tokens))
        reported = await _reported(api, tokens)
    assert sorted(s for s, _ in answers) == [200] * 10 + [201] * 20
    assert sorted((k, a) for _, a, k in stored["ledger"]) == sorted(set(orders))
    assert [done for _, done in stored["outbox"]] == [True] * 20
    assert stored["redis"] == "210" and reported == _report(210, 20)


@pytest.mark.usefixtures("faults")
async def test_crash_between_the_writes_is_recovered_once(local_stack: Stack) -> None:
    backend = local_stack.services["backend"]
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("crash")
        uid = user_id(tokens)
        await _buy(api, tokens, 100, "before")
        old_pid = backend.pid
        with pytest.raises(httpx.HTTPError):  # the backend dies before it can answer
            await _buy(api, tokens, 50, "dies", crash_after_commit=True)
        assert await asyncio.to_thread(local_stack.wait_restarted, "backend", old_pid or 0, 20)

        async def delivered() -> bool:
            return bool((await _stores(local_stack, uid))["redis"] == "150")

        await eventually(delivered, 5, interval=0.05)  # by the new process, on its own
        stored = await _stores(local_stack, uid)
        retry = await _buy(api, tokens, 50, "dies")  # the client retries after the error
        final = await _stores(local_stack, uid)
    dies = stored["ledger"][1][0]
    assert [(a, k) for _, a, k in stored["ledger"]] == [(100, "before"), (50, "dies")]
    assert stored["outbox"][1] == ({"ledger_id": dies, "user_id": uid, "amount": 50}, True)
    assert (retry[0], retry[1]["ledger_id"], retry[1]["redis_balance"]) == (200, dies, 150)
    assert final == stored


async def _buy_during_stall(
    api: ApexClient, tokens: Tokens, stack: Stack, client: aioredis.Redis
) -> tuple[bool, dict[str, Any], asyncio.Task[tuple[int, dict[str, Any]]]]:
    """Buy while Redis writes stall; (answered before the stall ended?, stores then, purchase)."""
    uid = user_id(tokens)

    async def committed() -> bool:
        return bool((await _stores(stack, uid))["ledger"])

    async with writes_paused(client, seconds=8):
        purchase = asyncio.create_task(_buy(api, tokens, 70, "during-stall"))
        try:
            await eventually(committed, 6, interval=0.02)
            return purchase.done(), await _stores(stack, uid), purchase
        except BaseException:
            purchase.cancel()
            raise


async def test_redis_write_stall_commits_first_and_applies_once(local_stack: Stack) -> None:
    """Writes to Redis stall: the purchase commits to SQLite and waits in the outbox, the
    cache untouched; once Redis takes writes again it lands exactly once."""
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, tokens = await api.new_user("stall")
        answered, during, purchase = await _buy_during_stall(api, tokens, local_stack, client)
        status, body = await asyncio.wait_for(purchase, 5)
        after = await _stores(local_stack, user_id(tokens))
    ledger_id = during["ledger"][0][0]
    payload = {"ledger_id": ledger_id, "user_id": user_id(tokens), "amount": 70}
    assert not answered and during == {
        "ledger": [(ledger_id, 70, "during-stall")],
        "outbox": [(payload, False)],
        "redis": None,
    }
    assert (status, body) == (201, {"ledger_id": ledger_id, "created": True, **_report(70, 1)})
    assert after == {**during, "outbox": [(payload, True)], "redis": "70"}


async def _retries_while_refused(client: aioredis.Redis, seconds: float) -> int:
    """How often the relay tries again within `seconds` while Redis refuses the write."""
    before = await failed_calls(client, "incrby")
    await asyncio.sleep(seconds)
    return await failed_calls(client, "incrby") - before


async def test_a_refused_redis_write_is_retried_not_marked_applied(local_stack: Stack) -> None:
    """Redis refuses the increment (the cached balance is corrupt): the purchase stays in
    the outbox, unapplied, is retried every 0.2 s, and lands once the cache is repaired."""
    async with ApexClient(local_stack.endpoints()) as api, redis_of(local_stack) as client:
        _, tokens = await api.new_user("refused")
        uid = user_id(tokens)
        await _buy(api, tokens, 10, "fine")
        await client.set(f"credits:{uid}", "corrupt")
        try:
            status, _ = await _buy(api, tokens, 5, "refused")
            retries = await _retries_while_refused(client, 0.6)
            during = await _stores(local_stack, uid)
        finally:
            await client.set(f"credits:{uid}", "10")  # repaired: the relay can go on

        async def delivered() -> bool:
            return bool((await _stores(local_stack, uid))["redis"] == "15")

        await eventually(delivered, 3, interval=0.02)
        after = await _stores(local_stack, uid)
    assert status == 503 and 2 <= retries <= 5, retries
    assert [done for _, done in during["outbox"]] == [True, False]
    assert [done for _, done in after["outbox"]] == [True, True]
    assert [(a, k) for _, a, k in after["ledger"]] == [(10, "fine"), (5, "refused")]


FAILING_OUTBOX = """CREATE TRIGGER IF NOT EXISTS suite_fault BEFORE INSERT ON outbox
BEGIN INSERT INTO suite_fault_no_such_table VALUES (1); END;"""


async def test_a_failed_outbox_write_leaves_neither_row(local_stack: Stack) -> None:
    """The outbox insert fails after the ledger insert (a broken trigger): the transaction
    is rolled back whole, and the next purchase commits normally."""
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("atomic")
        await sqlite_script(local_stack, FAILING_OUTBOX)
        try:
            failed = await api.http.post(
                f"{api.ep.backend}/api/credits",
                json={"amount": 9, "idempotency_key": "fails"},
                headers=tokens.header,
            )
            during = await _stores(local_stack, user_id(tokens))
        finally:
            await sqlite_script(local_stack, "DROP TRIGGER IF EXISTS suite_fault;")
        status, body = await _buy(api, tokens, 9, "fails")
        after = await _stores(local_stack, user_id(tokens))
    assert failed.status_code == 500 and during == EMPTY
    assert (status, body["created"], after["redis"]) == (201, True, "9")
    assert [(a, k) for _, a, k in after["ledger"]] == [(9, "fails")]


async def test_redis_outage_refuses_cleanly_and_recovers(local_stack: Stack) -> None:
    """With Redis stalled the purchase is refused (503, retryable) and neither store moves."""
    redis_proc = local_stack.redis.proc if local_stack.redis else None
    assert redis_proc is not None
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("outage")
        os.kill(redis_proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ApexError) as refused:
                await api.call(
                    "POST",
                    f"{api.ep.backend}/api/credits",
                    json={"amount": 70, "idempotency_key": "during-outage"},
                    headers=tokens.header,
                )
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)
        nothing = await _stores(local_stack, user_id(tokens))
        status, _ = await _buy(api, tokens, 70, "during-outage")
        stored = await _stores(local_stack, user_id(tokens))
    assert refused.value.status == 503 and nothing == EMPTY
    assert status == 201 and stored["redis"] == "70" and len(stored["ledger"]) == 1
