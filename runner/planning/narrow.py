"""Narrowing a selection before it runs: what a change touches, a shard of it, or what
fits a time budget, in that order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from runner.model import Entry, Registry
from runner.planning import budget, shard
from runner.planning.changed import Change, changed_files
from runner.registry import environments
from runner.results import EntryResult, Status
from runner.select import Selection
from runner.summary import money


@dataclass(frozen=True, kw_only=True)
class Narrowed:
    selection: Selection
    left_out: tuple[EntryResult, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def narrow_for(
    registry: Registry, selection: Selection, durations: dict[str, float], opts: dict[str, Any]
) -> Narrowed:
    """`narrow` with the command line's --changed, --shard and --budget; --env recorded."""
    changed = opts.get("changed")
    result = narrow(
        selection,
        durations,
        shard_spec=shard.parse_shard(opts.get("shard")),
        seconds=opts.get("budget"),
        change=None if changed is None else changed_files(registry.root, changed),
    )
    if opts.get("env") is None:
        return result
    profile = environments.describe(registry, opts["env"])
    note = f"environment {profile['name']!r}: " + (profile["description"] or "no description")
    meta = {**result.meta, "environment": profile}
    return replace(result, meta=meta, notes=(note, *result.notes))


def narrow(
    selection: Selection,
    durations: dict[str, float],
    *,
    shard_spec: tuple[int, int] | None,
    seconds: float | None,
    change: Change | None = None,
) -> Narrowed:
    result = Narrowed(selection=selection)
    if change is not None:
        result = _changed(result, change)
    if shard_spec is not None:
        result = _shard(result, durations, shard_spec)
    if seconds is not None:
        result = _budget(result, durations, seconds)
    return result


def _keep(selection: Selection, keep: list[Entry]) -> Selection:
    ids = {e.id for e in keep}
    return replace(selection, entries=tuple(e for e in selection.entries if e.id in ids))


def _shard(current: Narrowed, durations: dict[str, float], spec: tuple[int, int]) -> Narrowed:
    index, total = spec
    runnable = list(current.selection.runnable)
    bins = shard.partition(runnable, durations, total)
    mine = bins[index - 1] + list(current.selection.pending if index == 1 else ())
    expected = sum(durations.get(e.id, 0.0) for e in bins[index - 1])
    meta = {
        **current.meta,
        "shard": {
            "index": index,
            "total": total,
            "plan": plan_id(runnable, durations, total),
            "entries": [e.id for e in bins[index - 1]],
        },
        "selection": [e.id for e in current.selection.entries],
    }
    note = (
        f"shard {index}/{total}: {len(bins[index - 1])} of {len(runnable)} tests, "
        f"about {expected:.1f} s"
    )
    return replace(
        current, selection=_keep(current.selection, mine), meta=meta, notes=(*current.notes, note)
    )


def plan_id(entries: list[Entry], durations: dict[str, float], total: int) -> str:
    """What a shard plan was cut from: shards of one plan carry the same id, so `merge`
    can tell shards planned from different durations files or selections."""
    import hashlib  # noqa: PLC0415 - only --shard needs it

    basis = [total, *((e.id, round(durations.get(e.id, 0.0), 3)) for e in entries)]
    return hashlib.sha256(repr(basis).encode()).hexdigest()[:16]


def _budget(current: Narrowed, durations: dict[str, float], seconds: float) -> Narrowed:
    chosen, out = budget.choose(list(current.selection.runnable), durations, seconds)
    left = tuple(
        EntryResult(
            entry_id=e.id,
            status=Status.NOT_RUN,
            note=f"left out by --budget {seconds:g} s (expected {durations.get(e.id, 0.0):.1f} s)",
            left_out="budget",
        )
        for e in out
    )
    keep = chosen + list(current.selection.pending)
    note = (
        f"--budget {seconds:g} s: running {len(chosen)} tests; left out {len(out)} "
        f"tests, {money(sum(e.mrr for e in out))} MRR unverified"
    )
    return replace(
        current,
        selection=_keep(current.selection, keep),
        left_out=current.left_out + left,
        notes=(*current.notes, note),
    )


def _changed(current: Narrowed, change: Change) -> Narrowed:
    entries = current.selection.entries
    touched = [e for e in entries if e.covers and change.touches(e)]
    always = [e for e in entries if not e.covers]
    hit = {e.id for e in touched}  # a set: registries run to thousands of entries
    out = [e for e in entries if e.covers and e.id not in hit]
    meta = {
        **current.meta,
        "changed": {
            "ref": change.ref,
            "files": list(change.files),
            "touched": [e.id for e in touched],
            "touched_mrr": sum(e.mrr for e in touched),
            "always": [e.id for e in always],
            "left_out": [e.id for e in out],
        },
    }
    return replace(
        current,
        selection=_keep(current.selection, touched + always),
        meta=meta,
        notes=(*current.notes, _change_note(change, touched, always, out)),
    )


def _change_note(
    change: Change, touched: list[Entry], always: list[Entry], out: list[Entry]
) -> str:
    note = (
        f"--changed {change.ref}: {len(change.files)} changed files; this change touches "
        f"{money(sum(e.mrr for e in touched))} MRR across {len(touched)} tests"
    )
    if always:
        note += (
            f"; {len(always)} tests without covers always run ({money(sum(e.mrr for e in always))})"
        )
    return note + f"; {len(out)} tests not affected"
