"""This run against a baseline (an earlier run report, or the last run on record): per
entry, a new failure, fixed, still failing, a new or a removed entry; and how far the
protected MRR moved. What it says never changes the verdict."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from runner.results import FAILING, PROTECTING
from runner.verdict import Outcome


class Change(StrEnum):
    NEW_FAILURE = "new failure"
    FIXED = "fixed"
    STILL_FAILING = "still failing"
    NEW_ENTRY = "new entry"
    REMOVED_ENTRY = "removed entry"


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """What a comparison needs of an earlier run."""

    source: str  # for people: "runs/main.json", "the last run on record (#41, ...)"
    protected: float
    statuses: Mapping[str, str]  # entry id -> its status then


@dataclass(frozen=True, kw_only=True)
class Comparison:
    source: str
    protected_before: float
    protected_now: float
    changes: Mapping[str, Change]  # only the entries that changed, in the run's order
    before: Mapping[str, str]  # entry id -> status in the baseline, for those entries

    @property
    def delta(self) -> float:
        return self.protected_now - self.protected_before

    def counts(self) -> dict[Change, int]:
        found = Counter(self.changes.values())
        return {change: found[change] for change in Change if found[change]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "protected_mrr_before": self.protected_before,
            "protected_mrr_delta": self.delta,
            "changes": [
                {"id": i, "change": str(c), "before": self.before.get(i)}
                for i, c in self.changes.items()
            ],
        }


def change_of(before: str | None, now: str | None) -> Change | None:
    """How one entry moved; None when it did not move in a way a reviewer must see."""
    if before is None:
        return Change.NEW_ENTRY if now is not None else None
    if now is None:
        return Change.REMOVED_ENTRY
    if now in FAILING:
        return Change.STILL_FAILING if before in FAILING else Change.NEW_FAILURE
    if before in FAILING and now in PROTECTING:
        return Change.FIXED
    return None


def compare(outcome: Outcome, baseline: Baseline) -> Outcome:
    """`outcome` with its comparison against `baseline`. An entry the baseline has and
    this run did not select is removed only when the registry no longer has it."""
    now = {r.entry_id: str(r.status) for r in outcome.run.entries}
    registered = {e.id for e in outcome.registry.tests}
    gone = [i for i in baseline.statuses if i not in now and i not in registered]
    changes = {}
    for entry_id in [*now, *gone]:
        change = change_of(baseline.statuses.get(entry_id), now.get(entry_id))
        if change is not None:
            changes[entry_id] = change
    comparison = Comparison(
        source=baseline.source,
        protected_before=baseline.protected,
        protected_now=outcome.summary.total.protected,
        changes=changes,
        before={i: baseline.statuses[i] for i in changes if i in baseline.statuses},
    )
    return replace(outcome, comparison=comparison)


def from_report(source: str, data: Mapping[str, Any]) -> Baseline:
    """The baseline a JSON run report holds (read and schema-checked by the caller); a
    KeyError, TypeError or ValueError names what is missing."""
    statuses = {str(t["id"]): str(t["status"]) for t in data["tests"]}
    protected = float(data["total"]["protected_mrr"])
    if not math.isfinite(protected) or protected < 0:
        raise ValueError(f"protected_mrr {protected} is not an amount of money")
    return Baseline(source=source, protected=protected, statuses=statuses)
