"""Mutation scores per registry entry, and what a mutation result file holds (pure data).

An entry's mutants are the mutants of the files its `covers` name; an entry kills a mutant
when its tests fail (or time out) with the mutant in place. Its score is the share it
kills; "MRR verified by mutation" weighs each entry's MRR by that share.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA = "unified-test-runner/mutation"
SCHEMA_VERSION = 1
KILLED, SURVIVED, TIMED_OUT = "killed", "survived", "timed_out"


@dataclass(frozen=True, kw_only=True)
class Survivor:
    """A mutant an entry's tests did not notice, as a person reads it."""

    job_id: str
    path: str
    line: int
    operator: str
    diff: str


@dataclass(frozen=True, kw_only=True)
class EntryScore:
    entry_id: str
    mrr: float
    mutants: int  # every mutant of the files it covers, but those marked equivalent
    marked: int = 0  # mutants on lines marked `# pragma: no mutate`: never run nor scored
    killed: int = 0  # failing tests, timeouts included
    survived: int = 0
    timed_out: int = 0  # of the killed, those that hung (a hang is a kill)
    survivors: tuple[Survivor, ...] = ()

    @property
    def run(self) -> int:
        return self.killed + self.survived

    @property
    def score(self) -> float | None:
        return self.killed / self.run if self.run else None

    @property
    def sampled(self) -> bool:
        return 0 < self.run < self.mutants

    @property
    def interval(self) -> tuple[float, float] | None:
        """A 95% confidence interval for the score, when only a sample was run."""
        return wilson(self.killed, self.run) if self.sampled else None


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval: sound for small samples and scores near 0 or 1."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return (max(0.0, centre - half), min(1.0, centre + half))


def mrr_verified(scores: list[EntryScore]) -> float:
    """Sum of MRR x score over the entries with a score."""
    return sum(s.mrr * s.score for s in scores if s.score is not None)


def to_dict(scores: list[EntryScore], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": meta,
        "mrr_verified_by_mutation": mrr_verified(scores),
        "entries": [_entry(s) for s in scores],
    }


def _entry(score: EntryScore) -> dict[str, Any]:
    interval = score.interval
    return {
        "id": score.entry_id,
        "mrr": score.mrr,
        "mutants": score.mutants,
        "marked_equivalent": score.marked,
        "total": score.run,
        "killed": score.killed,
        "survived": score.survived,
        "timed_out": score.timed_out,
        "score": score.score,
        "interval_95": list(interval) if interval else None,
        "survivors": [asdict(s) for s in score.survivors],
    }


def read_scores(path: Path) -> dict[str, float]:
    """Each entry's score from a mutation result file (for the run reports)."""
    from runner.errors import UsageError  # noqa: PLC0415

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise ValueError("not a mutation result")
        return {str(e["id"]): float(e["score"]) for e in data["entries"] if e["score"] is not None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: not a readable mutation result ({exc})") from None
