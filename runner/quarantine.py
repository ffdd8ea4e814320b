"""Quarantine: known-bad entries (or pytest tests of them) a run carries knowingly.

A quarantine in force makes its entry `quarantined`: it cannot fail the run, its MRR is
never protected (it is shown as quarantined, part of the unverified MRR), and what it would
have been is kept beside (`outcome`). `muted` runs it and reports it; `skipped` does not
run it. A quarantine of some of an entry's tests leaves the entry to its other tests: if
one of those fails, the entry fails as it would have.

A quarantine is in force until the end of its `until` day, and only in the tiers the
run's gate honours (`quarantine_tiers`, by default 2 and 3: a tier-1 entry is never
quarantined unless a gate says it may be). One that expired, or that the gate does not
honour, is ignored, and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

from runner.model import SKIPPED, Entry, Gate, Quarantine, Registry
from runner.results import PROTECTING, EntryResult, RunResult, Status, TestResult, rollup

DEFAULT_TIERS = (2, 3)


@dataclass(frozen=True, kw_only=True)
class InForce:
    """The quarantines a run honours, and the notes on those it does not."""

    active: dict[str, Quarantine] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def skipped_entries(self) -> set[str]:
        return {i for i, q in self.active.items() if q.mode == SKIPPED and not q.tests}

    def skipped_tests(self) -> tuple[str, ...]:
        return tuple(t for q in self.active.values() if q.mode == SKIPPED for t in q.tests)


def in_force(registry: Registry, gate: Gate | None, today: date) -> InForce:
    tiers = gate.quarantine_tiers if gate is not None else DEFAULT_TIERS
    active: dict[str, Quarantine] = {}
    notes: list[str] = []
    for entry in registry.tests:
        q = entry.quarantine
        if q is None:
            continue
        if q.until < today:
            ended = f"ended on {q.until.isoformat()}: it counts again"
            notes.append(f"the quarantine of {entry.id} ({q.ticket}) {ended}")
        elif entry.tier not in tiers:
            notes.append(_not_honoured(entry, gate, tiers))
        else:
            active[entry.id] = q
    return InForce(active=active, notes=tuple(notes))


def _not_honoured(entry: Entry, gate: Gate | None, tiers: tuple[int, ...]) -> str:
    where = f"gate {gate.name!r}" if gate is not None else "a run without a gate"
    allowed = ", ".join(map(str, tiers)) or "none"
    return (
        f"the quarantine of tier-{entry.tier} entry {entry.id} is not honoured: {where} "
        f"quarantines tiers {allowed} only (quarantine_tiers)"
    )


def left_out(entry: Entry, q: Quarantine) -> EntryResult:
    """A skipped entry: not run, and said why."""
    return EntryResult(
        entry_id=entry.id,
        status=Status.QUARANTINED,
        note=f"quarantined, not run: {q.describe()}",
        left_out="quarantine",
        outcome=Status.NOT_RUN,
    )


def apply(result: EntryResult, q: Quarantine, entry: Entry, allow_skips: bool) -> EntryResult:
    """The entry's result under its quarantine."""
    if result.left_out == "quarantine":
        return result
    if not q.tests:
        note = f"quarantined ({result.status}): {q.describe()}"
        return replace(result, status=Status.QUARANTINED, outcome=result.status, note=note)
    held = tuple(t for t in result.tests if not _matches(t, q.tests))
    rest = rollup(entry.id, held, allow_skips=allow_skips)
    if held and rest.status not in PROTECTING:  # its other tests failed or did not verify
        return replace(rest, tests=result.tests)  # (pytest's --deselect is a prefix)
    n = len(result.tests) - len(held)
    note = f"{n} of its pytest tests quarantined, the others {rest.status}: {q.describe()}"
    return replace(
        result, status=Status.QUARANTINED, outcome=rest.status, note=note, tests=result.tests
    )


def _matches(test: TestResult, nodeids: tuple[str, ...]) -> bool:
    """A node id names the test itself or, as a prefix, every parameter of it."""
    return any(test.nodeid == n or test.nodeid.startswith((n + "[", n + "::")) for n in nodeids)


def revert_unhonoured(
    registry: Registry, run: RunResult, gate: str | None, today: date
) -> RunResult:
    """A run read back (`report`, `merge`) under the quarantines in force for `gate` now:
    an entry its shard carried that this gate does not (a tier it does not honour, a date
    past) is judged on what it was. Shards run without the merge's gate honour the default
    tiers; the merge's gate has the last word."""
    carried = in_force(registry, registry.gates.get(gate or ""), today)
    profile = run.context.environment
    environment = str(profile["name"]) if profile is not None else None
    entries = tuple(
        r if r.status is not Status.QUARANTINED or r.entry_id in carried.active
        else _unquarantined(r, registry.by_id[r.entry_id], environment)
        for r in run.entries
    )  # fmt: skip
    return replace(
        run, entries=entries, warnings=tuple(dict.fromkeys((*run.warnings, *carried.notes)))
    )


def _unquarantined(result: EntryResult, entry: Entry, environment: str | None) -> EntryResult:
    if not result.tests:
        return replace(result, status=result.outcome or Status.NOT_RUN, outcome=None)
    counted = rollup(entry.id, result.tests, allow_skips=entry.skips_allowed(environment))
    why = "its quarantine is not in force here"
    return replace(counted, note=f"{why}; {counted.note}" if counted.note else why)
