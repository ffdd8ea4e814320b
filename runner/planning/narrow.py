"""Narrowing a selection before it runs: what a change touches, a shard of it, or what
fits a time budget, in that order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from runner import quarantine
from runner.model import Entry, Registry
from runner.planning import budget, durations, shard
from runner.planning.changed import Change, changed_files, with_policy
from runner.quarantine import InForce
from runner.registry import environments
from runner.request import Narrowing, RunRequest
from runner.results import EntryResult, RunContext, Status
from runner.select import Selection
from runner.summary import entries, money


@dataclass(frozen=True, kw_only=True)
class Narrowed:
    """A selection narrowed for its run, with what the narrowing left out and recorded."""

    selection: Selection
    expected: dict[str, float] = field(default_factory=dict)  # seconds per runnable entry
    store: dict[str, float] = field(default_factory=dict)  # the durations file as read
    left_out: tuple[EntryResult, ...] = ()
    context: RunContext = field(default_factory=RunContext)
    notes: tuple[str, ...] = ()
    quarantine: InForce = field(default_factory=InForce)


def plan_run(registry: Registry, selection: Selection, request: RunRequest) -> Narrowed:
    """The selection as this request runs it: durations read once, the narrowing applied,
    the environment recorded."""
    store = durations.load(registry.root / request.durations_file)
    expected = durations.estimate(selection.runnable, store)
    ref = request.narrowing.changed
    change = None if ref is None else changed_files(registry.root, ref)
    if change is not None:
        change = with_policy(change, registry.changed, request.narrowing.observe)
    result = narrow(
        selection, expected, request.narrowing, change, store.get(durations.STARTUP, 0.0)
    )
    result = _quarantined(registry, result, request.gate)
    result = replace(result, expected=expected, store=store)
    if request.env is None:
        return result
    profile = environments.describe(registry, request.env)
    note = f"environment {profile['name']!r}: " + (profile["description"] or "no description")
    context = replace(result.context, environment=profile)
    return replace(result, context=context, notes=(note, *result.notes))


def _quarantined(registry: Registry, current: Narrowed, gate: str | None) -> Narrowed:
    """The quarantines in force; entries quarantined as `skipped` do not run."""
    carried = quarantine.in_force(registry, registry.gates.get(gate or ""), date.today())
    skipped = carried.skipped_entries()
    out = [e for e in current.selection.runnable if e.id in skipped]
    if not out and not carried.active and not carried.notes:
        return current
    left = tuple(quarantine.left_out(e, carried.active[e.id]) for e in out)
    keep = [e for e in current.selection.entries if e.id not in skipped]
    return replace(
        current,
        selection=_keep(current.selection, keep),
        left_out=current.left_out + left,
        quarantine=carried,
    )


def narrow(
    selection: Selection,
    expected: dict[str, float],
    narrowing: Narrowing,
    change: Change | None = None,
    startup: float = 0.0,
) -> Narrowed:
    """What a change touches, then a shard of it, then what fits a budget (pure); the
    budget pays `startup` (learned) before any entry."""
    result = Narrowed(selection=selection)
    if change is not None:
        result = _changed(result, change)
    if narrowing.shard is not None:
        result = _shard(result, expected, narrowing.shard)
    if narrowing.budget is not None:
        result = _budget(result, expected, narrowing.budget, startup)
    return result


def _keep(selection: Selection, keep: list[Entry]) -> Selection:
    ids = {e.id for e in keep}
    return replace(selection, entries=tuple(e for e in selection.entries if e.id in ids))


def _shard(current: Narrowed, expected: dict[str, float], spec: tuple[int, int]) -> Narrowed:
    index, total = spec
    runnable = list(current.selection.runnable)
    bins = shard.partition(runnable, expected, total)
    mine = bins[index - 1] + list(current.selection.pending if index == 1 else ())
    seconds = sum(expected.get(e.id, 0.0) for e in bins[index - 1])
    record = {"index": index, "total": total, "plan": plan_id(runnable, expected, total)}
    context = replace(
        current.context,
        shard={**record, "entries": [e.id for e in bins[index - 1]]},
        selection=tuple(e.id for e in current.selection.entries),
    )
    note = (
        f"shard {index}/{total}: {len(bins[index - 1])} of {entries(len(runnable))}, "
        f"about {seconds:.1f} s"
    )
    return replace(
        current,
        selection=_keep(current.selection, mine),
        context=context,
        notes=(*current.notes, note),
    )


def plan_id(entries: list[Entry], expected: dict[str, float], total: int) -> str:
    """What a shard plan was cut from: shards of one plan carry the same id, so `merge`
    can tell shards planned from different durations files or selections."""
    import hashlib  # noqa: PLC0415 - only --shard needs it

    basis = [total, *((e.id, round(expected.get(e.id, 0.0), 3)) for e in entries)]
    return hashlib.sha256(repr(basis).encode()).hexdigest()[:16]


def _budget(
    current: Narrowed, expected: dict[str, float], seconds: float, startup: float
) -> Narrowed:
    left_for_tests = max(0.0, seconds - startup)
    chosen, out = budget.choose(list(current.selection.runnable), expected, left_for_tests)
    left = tuple(_over_budget(e, seconds, expected) for e in out)
    keep = chosen + list(current.selection.pending)
    note = (
        f"--budget {seconds:g} s"
        + (f" ({startup:.1f} s of it start-up, as learned)" if startup else "")
        + f": running {entries(len(chosen))}; left out "
        f"{entries(len(out))}, {money(sum(e.mrr for e in out))} MRR unverified"
    )
    return replace(
        current,
        selection=_keep(current.selection, keep),
        left_out=current.left_out + left,
        notes=(*current.notes, note),
    )


def _over_budget(entry: Entry, seconds: float, expected: dict[str, float]) -> EntryResult:
    return EntryResult(
        entry_id=entry.id,
        status=Status.NOT_RUN,
        note=f"left out by --budget {seconds:g} s (expected {expected.get(entry.id, 0.0):.1f} s)",
        left_out="budget",
    )


def _changed(current: Narrowed, change: Change) -> Narrowed:
    """What the change touches, what has no covers, what is never skipped; the rest is
    left out, unless the change runs everything (`full`) or is observed."""
    entries = current.selection.entries
    touched = [e for e in entries if e.covers and change.touches(e)]
    always = [e for e in entries if not e.covers]
    hit = {e.id for e in touched}  # a set: registries run to thousands of entries
    guarded = [e for e in entries if e.covers and e.id not in hit and change.guards(e)]
    kept = hit | {e.id for e in guarded}
    out = [e for e in entries if e.covers and e.id not in kept]
    changed = _change_record(change, touched, always, out, guarded)
    runs_all = bool(change.full or change.observe)
    keep = entries if runs_all else [e for e in entries if e.id in kept or not e.covers]
    return replace(
        current,
        selection=_keep(current.selection, list(keep)),
        context=replace(current.context, changed=changed),
        notes=(*current.notes, _change_note(change, touched, always, out, guarded)),
    )


def _change_record(
    change: Change,
    touched: list[Entry],
    always: list[Entry],
    out: list[Entry],
    guarded: list[Entry],
) -> dict[str, Any]:
    """What the JSON report's `run.changed` carries (and `--observe` measures against)."""
    changed: dict[str, Any] = {
        "ref": change.ref,
        "files": list(change.files),
        "touched": [e.id for e in touched],
        "touched_mrr": sum(e.mrr for e in touched),
        "always": [e.id for e in always],
        "left_out": [] if change.full else [e.id for e in out],  # full: nothing is skipped
    }
    if guarded:
        changed["never_skipped"] = [e.id for e in guarded]
    if change.full or change.observe:
        changed.update(mode="observe" if change.observe else "full", full=change.full)
    return changed


def _change_note(
    change: Change,
    touched: list[Entry],
    always: list[Entry],
    out: list[Entry],
    guarded: list[Entry],
) -> str:
    note = (
        f"--changed {change.ref}: {len(change.files)} changed files; this change touches "
        f"{money(sum(e.mrr for e in touched))} MRR across {entries(len(touched))}"
    )
    if always:
        note += (
            f"; {entries(len(always))} without covers always run "
            f"({money(sum(e.mrr for e in always))})"
        )
    if guarded:
        note += f"; {entries(len(guarded))} never skipped ({money(sum(e.mrr for e in guarded))})"
    note += f"; {entries(len(out))} not affected"
    if change.full:
        return note + f": all run anyway, {change.full}"
    if change.observe:
        return note + ": --observe runs them all and measures what skipping them would miss"
    return note
