"""The registry's `changed:` section, the safety nets of `--changed REF`:

changed:
  always_full: [pyproject.toml, "**/conftest.py", config/**]  # a change here runs all
  never_skip: [cold-start-to-agent-response]                   # entry ids
  never_skip_tiers: [1]
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from runner.errors import RegistryError
from runner.model import ChangePolicy, Entry
from runner.registry.yamlread import LineDict

KEYS = ("always_full", "never_skip", "never_skip_tiers")


class _Source(Protocol):
    tiers: dict[int, Any]

    def fail(self, line: int | None, message: str) -> RegistryError: ...


def change_policy(raw: Any, src: _Source, line: int, tests: tuple[Entry, ...]) -> ChangePolicy:
    if not isinstance(raw, LineDict):
        raise src.fail(line, "'changed' must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise src.fail(
            raw.line, f"'changed': unknown key {unknown[0]!r} (allowed: {', '.join(KEYS)})"
        )
    ids = {e.id for e in tests}
    never = _strings(raw.get("never_skip", []), src, raw.line, "never_skip")
    missing = [i for i in never if i not in ids]
    if missing:
        raise src.fail(raw.line, f"'changed.never_skip' names unknown entry {missing[0]!r}")
    return ChangePolicy(
        always_full=_globs(raw.get("always_full", []), src, raw.line),
        never_skip=never,
        never_skip_tiers=_tiers(raw.get("never_skip_tiers", []), src, raw.line),
    )


def _strings(value: Any, src: _Source, line: int, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise src.fail(line, f"'changed.{key}' must be a list of names")
    return tuple(value)


def _globs(value: Any, src: _Source, line: int) -> tuple[str, ...]:
    globs = _strings(value, src, line, "always_full")
    if any(os.path.isabs(g) or "\0" in g for g in globs):
        raise src.fail(line, "'changed.always_full' must be relative path globs")
    return globs


def _tiers(value: Any, src: _Source, line: int) -> tuple[int, ...]:
    ok = isinstance(value, list) and all(type(v) is int for v in value)
    if not ok or any(v not in src.tiers for v in value):
        raise src.fail(line, f"'changed.never_skip_tiers' must list tiers of {sorted(src.tiers)}")
    return tuple(value)
