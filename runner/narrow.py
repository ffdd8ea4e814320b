"""Narrowing a selection before it runs: a shard of it, or what fits a time budget."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from runner import budget, shard
from runner.model import Entry
from runner.results import EntryResult, Status
from runner.select import Selection
from runner.summary import money


@dataclass(frozen=True, kw_only=True)
class Narrowed:
    selection: Selection
    left_out: tuple[EntryResult, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def narrow(
    selection: Selection,
    durations: dict[str, float],
    *,
    shard_spec: tuple[int, int] | None,
    seconds: float | None,
) -> Narrowed:
    result = Narrowed(selection=selection)
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
        "shard": {"index": index, "total": total},
        "selection": [e.id for e in current.selection.entries],
    }
    note = (
        f"shard {index}/{total}: {len(bins[index - 1])} of {len(runnable)} tests, "
        f"about {expected:.1f} s"
    )
    return replace(
        current, selection=_keep(current.selection, mine), meta=meta, notes=(*current.notes, note)
    )


def _budget(current: Narrowed, durations: dict[str, float], seconds: float) -> Narrowed:
    chosen, out = budget.choose(list(current.selection.runnable), durations, seconds)
    left = tuple(
        EntryResult(
            entry_id=e.id,
            status=Status.NOT_RUN,
            note=f"left out by --budget {seconds:g} s (expected {durations.get(e.id, 0.0):.1f} s)",
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
