"""Sharding: a least-duration (LPT) partition of the selection. Pure and deterministic."""

from __future__ import annotations

import os
from collections.abc import Mapping

from runner.errors import UsageError
from runner.model import Entry

SHARD_ENV = ("TEST_SHARD_INDEX", "TEST_TOTAL_SHARDS")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` (1-based), else TEST_SHARD_INDEX (0-based) / TEST_TOTAL_SHARDS, else None."""
    if text is None:
        index, total = (os.environ.get(v) for v in SHARD_ENV)
        if not index or not total:
            return None
        text = f"{_int(index, 'TEST_SHARD_INDEX') + 1}/{total}"
    k, sep, n = text.partition("/")
    shard, total_n = _int(k, "--shard"), _int(n, "--shard") if sep else 0
    if not sep or total_n < 1 or not 1 <= shard <= total_n:
        raise UsageError(f"--shard must be K/N with 1 <= K <= N, not {text!r}")
    return shard, total_n


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a whole number") from None


def partition(
    entries: list[Entry], durations: Mapping[str, float], shards: int
) -> list[list[Entry]]:
    """Longest first onto the least-loaded shard; ties broken by id and shard number."""
    bins: list[list[Entry]] = [[] for _ in range(shards)]
    loads = [0.0] * shards
    for entry in sorted(entries, key=lambda e: (-durations.get(e.id, 0.0), e.id)):
        target = min(range(shards), key=lambda i: (loads[i], len(bins[i]), i))
        bins[target].append(entry)
        loads[target] += durations.get(entry.id, 0.0)
    return bins
