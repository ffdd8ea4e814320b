"""Credits: one business operation that writes SQLite and Redis, coordinated by an outbox.

The SQLite transaction records the ledger row and an outbox row together; a relay then
applies the outbox row to Redis with a Lua script that is idempotent per outbox id, and
marks it delivered. A crash between the two writes leaves an undelivered outbox row, which
the relay applies on the next start: never lost, never applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from typing import Any

import redis.asyncio as aioredis

from apex.backend.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
    amount INTEGER NOT NULL, idempotency_key TEXT NOT NULL, created_at REAL NOT NULL,
    UNIQUE (user_id, idempotency_key));
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL, delivered_at REAL);
"""

# The marker is set only after INCRBY succeeded: a refused increment (an error ends the
# script, and what it already wrote stays written) must leave the row to be retried.
_APPLY = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local balance = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1')
return balance
"""


def balance_key(user_id: str) -> str:
    return f"credits:{user_id}"


class Ledger:
    def __init__(self, store: Store, client: aioredis.Redis) -> None:
        self.store, self.redis = store, client
        with store.lock:
            store.db.executescript(SCHEMA)
        self._apply = client.register_script(_APPLY)

    def record(self, user_id: str, amount: int, key: str) -> tuple[int, bool]:
        """(ledger id, created?) — the ledger and outbox rows commit together or not at all."""
        with self.store.lock:
            db = self.store.db
            try:
                db.execute("BEGIN IMMEDIATE")
                ledger_id = _insert(db, user_id, amount, key)
                db.execute("COMMIT")
            except sqlite3.IntegrityError:  # the same idempotency key: the earlier purchase
                db.execute("ROLLBACK")
                [(earlier,)] = db.execute(
                    "SELECT id FROM ledger WHERE user_id = ? AND idempotency_key = ?",
                    (user_id, key),
                ).fetchall()
                return int(earlier), False
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return ledger_id, True

    async def relay(self) -> int:
        """Apply every undelivered outbox row to Redis; returns how many were applied."""
        rows = await asyncio.to_thread(
            self.store.query,
            "SELECT id, payload FROM outbox WHERE delivered_at IS NULL ORDER BY id",
        )
        for outbox_id, payload in rows:
            op = json.loads(payload)
            await self._apply(
                keys=[balance_key(op["user_id"]), f"outbox:applied:{outbox_id}"],
                args=[op["amount"]],
            )
            await asyncio.to_thread(
                self.store.execute,
                "UPDATE outbox SET delivered_at = ? WHERE id = ?",
                (time.time(), outbox_id),
            )
        return len(rows)

    async def balances(self, user_id: str) -> dict[str, Any]:
        [(balance, entries)] = await asyncio.to_thread(
            self.store.query,
            "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM ledger WHERE user_id = ?",
            (user_id,),
        )
        [(pending,)] = await asyncio.to_thread(
            self.store.query,
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND user_id = ?",
            (user_id,),
        )
        cached = await self.redis.get(balance_key(user_id))
        return {
            "sqlite_balance": balance,
            "redis_balance": int(cached or 0),
            "entries": entries,
            "pending": pending,
        }

    async def run_relay(self, interval: float = 0.2) -> None:
        """Keep delivering: covers rows left by a crash or by a Redis outage."""
        while True:
            with contextlib.suppress(Exception):
                await self.relay()
            await asyncio.sleep(interval)


def _insert(db: sqlite3.Connection, user_id: str, amount: int, key: str) -> int:
    [(ledger_id,)] = db.execute(
        "INSERT INTO ledger (user_id, amount, idempotency_key, created_at) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (user_id, amount, key, time.time()),
    ).fetchall()
    payload = json.dumps({"ledger_id": ledger_id, "user_id": user_id, "amount": amount})
    db.execute(
        "INSERT INTO outbox (user_id, payload, created_at) VALUES (?, ?, ?)",
        (user_id, payload, time.time()),
    )
    return int(ledger_id)
