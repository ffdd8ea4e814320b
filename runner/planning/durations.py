"""Recorded durations per registry entry (`.test_durations.json`): mergeable, stable diffs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from runner.files import write_text
from runner.model import Entry
from runner.results import EntryResult, Status

FALLBACK_SECONDS = 1.0
# what a run costs beyond its tests (interpreter, collection, plugins), learned from the
# last run that was not a shard; not an entry id: those start with a letter or digit
STARTUP = "(start-up)"
MAX_SECONDS = 7 * 24 * 3600.0  # longer (or Infinity, or NaN) is no duration: ignored
_RECORDED = frozenset({Status.PASSED, Status.FAILED, Status.FLAKY, Status.ERROR})


def load(path: Path) -> dict[str, float]:
    """The store, or {} if there is none or it cannot be read (durations are a hint)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < MAX_SECONDS
    }


def merge(*stores: Mapping[str, float]) -> dict[str, float]:
    """Later stores win; keys sorted so the file diffs cleanly."""
    merged: dict[str, float] = {}
    for store in stores:
        merged.update(store)
    return dict(sorted(merged.items()))


def from_results(results: Iterable[EntryResult]) -> dict[str, float]:
    return {r.entry_id: round(r.duration, 3) for r in results if r.status in _RECORDED and r.tests}


def startup(wall: float, results: Iterable[EntryResult]) -> dict[str, float]:
    """{STARTUP: seconds}: the run's wall time less its tests' time (spread over the
    xdist workers that ran them); {} when no test ran."""
    tests = [t for r in results for t in r.tests if t.duration > 0]
    if not tests:
        return {}
    workers = max(1, len({t.worker for t in tests if t.worker}))
    return {STARTUP: round(max(0.0, wall - sum(t.duration for t in tests) / workers), 3)}


def save(path: Path, store: Mapping[str, float]) -> None:
    write_text(path, json.dumps(merge(store), indent=2) + "\n")


def _median(values: list[float]) -> float:
    """statistics.median without importing statistics (it costs --list start-up time)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def estimate(entries: Iterable[Entry], store: Mapping[str, float]) -> dict[str, float]:
    """Each entry's expected seconds; an unknown one gets its level's median (or 1 s)."""
    entries = list(entries)
    by_level: dict[str, list[float]] = {}
    for e in entries:
        if e.id in store:
            by_level.setdefault(e.level, []).append(store[e.id])
    known = [v for values in by_level.values() for v in values]
    fallback = _median(known) if known else FALLBACK_SECONDS
    return {
        e.id: store.get(e.id, _median(by_level[e.level]) if e.level in by_level else fallback)
        for e in entries
    }
