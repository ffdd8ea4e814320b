"""The `quarantine` of a registry entry, read and checked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from runner.errors import RegistryError
from runner.model import MUTED, SKIPPED, Quarantine

KEYS = {"mode", "owner", "reason", "ticket", "until", "tests"}
Fail = Callable[[str], RegistryError]


def parse_quarantine(value: Any, fail: Fail) -> Quarantine:
    """`{mode: muted|skipped, owner, reason, ticket, until: YYYY-MM-DD, tests: [node ids]}`:
    every key but `tests` is required, so a quarantine always says who, why and until when."""
    if not isinstance(value, dict):
        raise fail("'quarantine' must be a mapping with mode, owner, reason, ticket and until")
    unknown = sorted(str(k) for k in value if k not in KEYS)
    if unknown:
        raise fail(f"quarantine: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(KEYS))})")
    missing = sorted(KEYS - {"tests"} - set(value))
    if missing:
        raise fail(f"quarantine: missing required key {missing[0]!r}")
    if value["mode"] not in (MUTED, SKIPPED):
        raise fail(f"quarantine: mode must be {MUTED!r} or {SKIPPED!r}, not {value['mode']!r}")
    return Quarantine(
        mode=str(value["mode"]),
        owner=_text(value, "owner", fail),
        reason=_text(value, "reason", fail),
        ticket=_text(value, "ticket", fail),
        until=_date(value["until"], fail),
        tests=_tests(value.get("tests", []), fail),
    )


def _text(value: dict[str, Any], key: str, fail: Fail) -> str:
    text = value[key]
    if not isinstance(text, str | int) or not str(text).strip():
        raise fail(f"quarantine: {key!r} must be a non-empty string")
    return str(text)


def _date(value: Any, fail: Fail) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise fail(f"quarantine: 'until' must be a date (YYYY-MM-DD), not {value!r}") from None


def _tests(value: Any, fail: Fail) -> tuple[str, ...]:
    ok = isinstance(value, list) and all(isinstance(v, str) and "::" in v for v in value)
    if not ok:
        raise fail("quarantine: 'tests' must be a list of pytest node ids (file::test)")
    return tuple(value)
