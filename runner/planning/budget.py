"""`--budget SECONDS`: the entries that protect the most MRR within a time budget.

A 0/1 knapsack over recorded durations, solved exactly by dynamic programming over time
buckets (durations are rounded up, so the choice never exceeds the budget). Tier-1 MRR is
weighted above everything else: when the budget is tight, tier 1 goes first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from runner.model import Entry

BUCKETS = 2000
EXACT_UP_TO = 1000  # beyond this the exact table gets slow in Python: greedy by value/time


def choose(
    entries: list[Entry], durations: Mapping[str, float], budget: float
) -> tuple[list[Entry], list[Entry]]:
    """(chosen, left out), both in the input order."""
    if budget <= 0 or not entries:
        return [], list(entries)
    step = budget / BUCKETS
    weights = [max(1, math.ceil(durations.get(e.id, 0.0) / step - 1e-9)) for e in entries]
    boost = sum(e.mrr for e in entries) + 1.0
    values = [e.mrr * (boost if e.tier == 1 else 1.0) for e in entries]
    keep = (
        _knapsack(weights, values, BUCKETS)
        if len(entries) <= EXACT_UP_TO
        else _greedy(weights, values, BUCKETS)
    )
    chosen = [e for i, e in enumerate(entries) if i in keep]
    return chosen, [e for i, e in enumerate(entries) if i not in keep]


def _greedy(weights: list[int], values: list[float], capacity: int) -> set[int]:
    keep, used = set(), 0
    for i in sorted(range(len(weights)), key=lambda i: (-values[i] / weights[i], i)):
        if used + weights[i] <= capacity:
            keep.add(i)
            used += weights[i]
    return keep


def _knapsack(weights: list[int], values: list[float], capacity: int) -> set[int]:
    best = [0.0] * (capacity + 1)
    took: list[list[bool]] = []
    for w, v in zip(weights, values, strict=True):
        row = [False] * (capacity + 1)
        for c in range(capacity, w - 1, -1):
            if best[c - w] + v > best[c]:
                best[c], row[c] = best[c - w] + v, True
        took.append(row)
    keep, c = set(), capacity
    for i in range(len(weights) - 1, -1, -1):
        if took[i][c]:
            keep.add(i)
            c -= weights[i]
    return keep
