"""`plan` and `--list`: what a selection would run, as plain lines or JSON (no rich, no
pytest: this must start fast)."""

from __future__ import annotations

import json
from typing import Any

from runner.model import Entry, Registry
from runner.planning.narrow import plan_run
from runner.request import RunRequest
from runner.select import Selection, level_timeout
from runner.summary import money


def print_plan(
    registry: Registry, selection: Selection, request: RunRequest, *, as_json: bool
) -> None:
    planned = plan_run(registry, selection, request)
    timeout = request.timeout or level_timeout(registry, selection.level)
    data = plan_dict(registry, planned.selection, timeout, planned.expected)
    data.update(
        {
            "gate": request.gate,
            "notes": list(planned.notes),
            **planned.context.as_dict(),
            "left_out": [r.entry_id for r in planned.left_out],
        }
    )
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for line in [
        *planned.notes,
        *plan_lines(registry, planned.selection, timeout, planned.expected),
    ]:
        print(line)


def plan_dict(
    registry: Registry,
    selection: Selection,
    timeout: float,
    expected: dict[str, float] | None = None,
) -> dict[str, Any]:
    expected = expected or {}
    runnable = selection.runnable
    return {
        "level": selection.level,
        "levels": sorted(selection.levels),
        "timeout_s": timeout,
        "selected": len(selection.entries),
        "runnable": len(runnable),
        "pending": len(selection.pending),
        "selected_mrr": sum(e.mrr for e in selection.entries),
        "runnable_mrr": sum(e.mrr for e in runnable),
        "registered_mrr": registry.total_mrr(),
        "expected_s": round(sum(expected.get(e.id, 0.0) for e in runnable), 3),
        "tests": [_plan_entry(e, expected.get(e.id)) for e in selection.entries],
    }


def _plan_entry(e: Entry, seconds: float | None) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "tier": e.tier,
        "mrr": e.mrr,
        "level": e.level,
        "owner": e.owner,
        "path": e.path,
        "status": e.status,
        "expected_s": None if seconds is None else round(seconds, 3),
    }


def plan_lines(
    registry: Registry,
    selection: Selection,
    timeout: float,
    expected: dict[str, float] | None = None,
) -> list[str]:
    expected = expected or {}
    rows: list[tuple[str, ...]] = [("TIER", "MRR", "LEVEL", "STATUS", "EXPECTED", "ID", "PATH")]
    rows += [_plan_row(e, expected.get(e.id)) for e in selection.entries]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6]
        for r in rows
    ]
    return [*lines, _plan_total(plan_dict(registry, selection, timeout, expected))]


def _plan_row(e: Entry, seconds: float | None) -> tuple[str, ...]:
    shown = "-" if seconds is None else f"{seconds:.1f} s"
    return (str(e.tier), money(e.mrr), e.level, e.status, shown, e.id, e.path)


def _plan_total(plan: dict[str, Any]) -> str:
    return (
        f"{plan['runnable']} of {plan['selected']} selected entries would run "
        f"({plan['pending']} pending), protecting up to {money(plan['runnable_mrr'])} of "
        f"{money(plan['registered_mrr'])} registered MRR; level {plan['level']!r}, "
        f"expected {plan['expected_s']:.1f} s, timeout {plan['timeout_s']:g} s"
    )
