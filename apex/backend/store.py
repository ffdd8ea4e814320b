"""SQLite, the primary store: threads, messages, agent runs and their state transitions."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    title TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id TEXT NOT NULL REFERENCES threads(id), role TEXT NOT NULL,
    content TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS agent_runs (id TEXT PRIMARY KEY, thread_id TEXT NOT NULL,
    agent TEXT NOT NULL, parent TEXT, state TEXT NOT NULL, error TEXT,
    started_at REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS transitions (id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL, state TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS usage (user_id TEXT NOT NULL, model TEXT NOT NULL,
    tokens INTEGER NOT NULL, cost_cents INTEGER NOT NULL, day TEXT NOT NULL);
"""

SAMPLE_USAGE = [
    ("gpt-large", 1_200_000, 3600),
    ("gpt-small", 4_800_000, 960),
    ("embedder", 9_000_000, 180),
]


class Store:
    """One connection shared under a lock; WAL keeps readers off the writer's back."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return list(self.db.execute(sql, args).fetchall())

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self.lock:
            self.db.execute(sql, args)

    def thread_for(self, user_id: str, thread_id: str | None, title: str) -> str:
        if thread_id and self.owner(thread_id) == user_id:
            return thread_id
        new_id = str(uuid.uuid4())
        self.execute(
            "INSERT INTO threads VALUES (?, ?, ?, ?)", (new_id, user_id, title[:80], time.time())
        )
        return new_id

    def owner(self, thread_id: str) -> str | None:
        rows = self.query("SELECT user_id FROM threads WHERE id = ?", (thread_id,))
        return str(rows[0][0]) if rows else None

    def add_message(self, thread_id: str, role: str, content: str) -> None:
        self.execute(
            "INSERT INTO messages (thread_id, role, content, created_at) VALUES (?, ?, ?, ?)",
            (thread_id, role, content, time.time()),
        )

    def messages(self, thread_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT role, content, created_at FROM messages WHERE thread_id = ? ORDER BY id",
            (thread_id,),
        )
        return [{"role": r, "content": c, "created_at": t} for r, c, t in rows]

    def threads(self, user_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT id, title, created_at FROM threads WHERE user_id = ? ORDER BY created_at",
            (user_id,),
        )
        return [{"id": i, "title": t, "created_at": c} for i, t, c in rows]

    def record_run(self, run_id: str, thread_id: str, agent: str, parent: str | None) -> None:
        self.execute(
            "INSERT INTO agent_runs (id, thread_id, agent, parent, state) "
            "VALUES (?, ?, ?, ?, 'pending')",
            (run_id, thread_id, agent, parent),
        )
        self.execute(
            "INSERT INTO transitions (run_id, state, at) VALUES (?, 'pending', ?)",
            (run_id, time.time()),
        )

    def record_state(self, run_id: str, state: str, error: str | None = None) -> None:
        now = time.time()
        column = "started_at" if state == "running" else "finished_at"
        self.execute(
            f"UPDATE agent_runs SET state = ?, error = ?, {column} = ? WHERE id = ?",
            (state, error, now, run_id),
        )
        self.execute(
            "INSERT INTO transitions (run_id, state, at) VALUES (?, ?, ?)", (run_id, state, now)
        )

    def run_tree(self, run_id: str, user_id: str) -> list[dict[str, Any]]:
        """A run and its sub-agent runs, only for the user whose thread it belongs to."""
        rows = self.query(
            "SELECT id, agent, state, error, started_at, finished_at FROM agent_runs "
            "WHERE (id = ? OR parent = ?) AND thread_id IN "
            "(SELECT id FROM threads WHERE user_id = ?) ORDER BY rowid",
            (run_id, run_id, user_id),
        )
        keys = ("run_id", "agent", "state", "error", "started_at", "finished_at")
        return [
            {**dict(zip(keys, r, strict=True)), "transitions": self._states(r[0])} for r in rows
        ]

    def _states(self, run_id: str) -> list[str]:
        rows = self.query("SELECT state FROM transitions WHERE run_id = ? ORDER BY id", (run_id,))
        return [str(state) for (state,) in rows]

    def usage(self, user_id: str) -> list[dict[str, Any]]:
        with self.lock:  # agents read a new account's usage at once: seed it exactly once
            if not self.db.execute(
                "SELECT 1 FROM usage WHERE user_id = ? LIMIT 1", (user_id,)
            ).fetchone():
                self.db.executemany(
                    "INSERT INTO usage VALUES (?, ?, ?, ?, date('now'))",
                    [(user_id, model, tokens, cents) for model, tokens, cents in SAMPLE_USAGE],
                )
        rows = self.query(
            "SELECT model, SUM(tokens), SUM(cost_cents) FROM usage "
            "WHERE user_id = ? GROUP BY model ORDER BY 3 DESC",
            (user_id,),
        )
        return [{"model": m, "tokens": t, "cost_usd": c / 100} for m, t, c in rows]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
