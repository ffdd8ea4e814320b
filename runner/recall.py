"""`--changed REF --observe`: everything ran, so what would skipping the entries the change
does not touch have missed? Recall is the share of the failing entries the selection would
have run, plainly and weighted by MRR; None when nothing failed (nothing to miss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.results import FAILING
from runner.verdict import Outcome


@dataclass(frozen=True, kw_only=True)
class Recall:
    skipped: tuple[str, ...]  # what the selection would have left out
    skipped_mrr: float
    failing: int  # entries that failed in the whole run
    missed: tuple[str, ...]  # failing entries the selection would have left out
    recall: float | None
    recall_mrr: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": list(self.skipped),
            "skipped_mrr": self.skipped_mrr,
            "failing": self.failing,
            "missed": list(self.missed),
            "recall": self.recall,
            "recall_mrr": self.recall_mrr,
        }


def observed(outcome: Outcome) -> Recall | None:
    changed = outcome.run.context.changed
    if not changed or changed.get("mode") != "observe":
        return None
    mrr = {e.id: e.mrr for e in outcome.registry.tests}
    ran = {r.entry_id for r in outcome.run.entries if not r.left_out and r.entry_id in mrr}
    # what this run ran of what the selection would have skipped (a shard or a budget
    # may have taken some away: those say nothing about the selection)
    skipped = tuple(str(i) for i in changed.get("left_out", ()) if i in ran)
    failing = [r.entry_id for r in outcome.run.entries if r.status in FAILING and r.entry_id in ran]
    left = set(skipped)
    missed = tuple(i for i in failing if i in left)
    at_risk = sum(mrr[i] for i in failing)
    return Recall(
        skipped=skipped,
        skipped_mrr=sum(mrr[i] for i in skipped),
        failing=len(failing),
        missed=missed,
        recall=(len(failing) - len(missed)) / len(failing) if failing else None,
        recall_mrr=(at_risk - sum(mrr[i] for i in missed)) / at_risk if at_risk else None,
    )
