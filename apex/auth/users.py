"""Users in SQLite with argon2 password hashes (argon2-cffi)."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# OWASP's smallest argon2id profile (19 MiB, 2 passes). A test stack may choose a cheaper
# cost (APEX_ARGON2_TIME_COST, APEX_ARGON2_MEMORY_KIB), as Django's test hashers do: still a
# real argon2id hash, and the dummy below costs exactly what a real one does.
HASHER = PasswordHasher(
    time_cost=int(os.environ.get("APEX_ARGON2_TIME_COST", "2")),
    memory_cost=int(os.environ.get("APEX_ARGON2_MEMORY_KIB", "19456")),
    parallelism=1,
)
# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = HASHER.hash("apex-dummy-password")


@dataclass(frozen=True, kw_only=True)
class User:
    id: str
    email: str
    roles: tuple[str, ...] = ("user",)


class UserStore:
    """Thread-safe access to the users table."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, "
            "email TEXT UNIQUE NOT NULL, hash TEXT NOT NULL, roles TEXT NOT NULL)"
        )
        self.lock = threading.Lock()

    def add(self, email: str, password: str, roles: tuple[str, ...] = ("user",)) -> User:
        if not EMAIL_RE.match(email) or len(password) < 8:
            raise ValueError("a valid email and a password of at least 8 characters are needed")
        user = User(id=str(uuid.uuid4()), email=email.lower(), roles=roles)
        with self.lock:
            self.db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?)",
                (user.id, user.email, HASHER.hash(password), ",".join(roles)),
            )
        return user

    def authenticate(self, email: str, password: str) -> User | None:
        """The user if the password matches; the same work is done whether or not it exists."""
        row = self._row("email", email.lower())
        stored = row[2] if row else _DUMMY_HASH
        try:
            HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return _user(row) if row else None

    def by_email(self, email: str) -> User | None:
        row = self._row("email", email.lower())
        return _user(row) if row else None

    def get(self, user_id: str) -> User | None:
        row = self._row("id", user_id)
        return _user(row) if row else None

    def _row(self, column: str, value: str) -> tuple[str, str, str, str] | None:
        with self.lock:
            cur = self.db.execute(
                f"SELECT id, email, hash, roles FROM users WHERE {column} = ?", (value,)
            )
            row: tuple[str, str, str, str] | None = cur.fetchone()
        return row


def _user(row: tuple[str, str, str, str]) -> User:
    return User(id=row[0], email=row[1], roles=tuple(row[3].split(",")))
