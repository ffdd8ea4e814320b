"""`merge`: one run out of shard reports, and what those reports say about each other.

Every shard of one plan records the plan's id, its own entries and the whole selection.
A missing shard, shards cut from different plans (one job had `.test_durations.json`,
another did not), an entry run by two shards or by none: each is named, and each breaks
the merged run unless the user allows missing shards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from runner.commands.report import judge_again
from runner.model import Registry
from runner.registry.load import load_registry
from runner.reports.reader import load_run, read_report
from runner.request import MergeRequest
from runner.results import EntryResult, RunResult, Status
from runner.supervisor.run import combine


def merge(request: MergeRequest) -> int:
    """One run, summary and verdict out of shard reports, and the reports asked for."""
    from runner.reports.console import make_console, render_summary  # noqa: PLC0415
    from runner.reports.files import check_reports, write_reports  # noqa: PLC0415
    from runner.verdict import final_exit  # noqa: PLC0415

    paths = check_reports(request.outputs)
    datas = [read_report(p) for p in request.reports]
    runs = [load_run(p, d) for p, d in zip(request.reports, datas, strict=True)]
    registry = load_registry(request.registry)
    run = merge_runs(registry, runs, request.allow_missing_shards)
    args = tuple(str(a) for a in datas[0]["run"].get("pytest_args", ()))
    outcome = judge_again(request.registry, run, request.gate, args)
    render_summary(make_console(), outcome)
    return final_exit(outcome, write_reports(outcome, paths))


def merge_runs(registry: Registry, runs: list[RunResult], allow_missing: bool) -> RunResult:
    """The shards as one run; entries no shard ran are `not_run`."""
    shards = [r.context.shard for r in runs]
    missing = _missing(shards)
    merged = combine(runs)
    latest = {e.entry_id: e for e in merged.entries}  # a later report of an entry wins
    absent = [i for i in _expected(registry, runs) if i not in latest]
    problems = [*_plan_problems(shards), *_overlaps(runs)]
    if missing and not allow_missing:
        problems.append(
            f"shard report(s) missing: {missing} of {_total(shards)} "
            "(--allow-missing-shards counts their entries as unverified instead)"
        )
    elif absent and not missing:
        problems.append(f"{len(absent)} selected entries ran in no shard: {', '.join(absent[:5])}")
    warnings = (f"shard report(s) missing: {missing} of {_total(shards)}",) if missing else ()
    return replace(
        merged,
        entries=(*latest.values(), *_absent(absent, missing, allow_missing)),
        duration=max((r.duration for r in runs), default=0.0),
        shard_durations=tuple(r.duration for r in runs),
        problems=(*merged.problems, *problems),
        warnings=(*merged.warnings, *warnings),
    )


def _expected(registry: Registry, runs: list[RunResult]) -> list[str]:
    """Every entry some shard's selection holds, in order (the registry's, by now)."""
    ids = dict.fromkeys(i for r in runs for i in r.context.selection)
    return [i for i in ids if i in registry.by_id]


def _absent(absent: list[str], missing: list[int], allow_missing: bool) -> list[EntryResult]:
    note = f"not run: no report from shard(s) {missing}" if missing else "not run: in no shard"
    left = "missing shard" if missing and allow_missing else ""
    return [
        EntryResult(entry_id=i, status=Status.NOT_RUN, note=note, left_out=left) for i in absent
    ]


def _total(shards: list[Any]) -> int:
    return max((int(s["total"]) for s in shards if isinstance(s, dict)), default=0)


def _missing(shards: list[Any]) -> list[int]:
    seen = {int(s["index"]) for s in shards if isinstance(s, dict)}
    return sorted(set(range(1, _total(shards) + 1)) - seen)


def _plan_problems(shards: list[Any]) -> list[str]:
    known = [s for s in shards if isinstance(s, dict)]
    problems = []
    if len({int(s["total"]) for s in known}) > 1:
        totals = sorted({int(s["total"]) for s in known})
        problems.append(f"the shard reports disagree on the number of shards: {totals}")
    plans = sorted({str(s.get("plan")) for s in known})
    if len(plans) > 1:
        problems.append(
            "the shards were planned from different inputs (a different .test_durations.json "
            f"or selection in each job): plans {', '.join(plans)}"
        )
    twice = sorted(i for i, n in Counter(int(s["index"]) for s in known).items() if n > 1)
    if twice:
        problems.append(f"more than one report for shard(s) {twice}")
    return problems


def _overlaps(runs: list[RunResult]) -> list[str]:
    counts = Counter(e.entry_id for r in runs for e in r.entries if e.status is not Status.PENDING)
    twice = sorted(i for i, n in counts.items() if n > 1)
    return (
        [f"{len(twice)} entries ran in more than one shard: {', '.join(twice[:5])}"]
        if twice
        else []
    )
