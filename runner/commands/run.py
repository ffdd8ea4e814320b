"""`run`: one run from selection to exit code: plan, supervise, judge, render, write,
remember."""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import replace
from typing import Any

from runner import history, quarantine
from runner.baseline import Baseline, compare
from runner.commands.baseline import load_baseline
from runner.errors import EmptySelectionError
from runner.model import Registry
from runner.mutation.score import read_scores
from runner.planning import durations
from runner.planning.changed import head_commit
from runner.planning.narrow import Narrowed, plan_run
from runner.quarantine import InForce
from runner.registry.environments import resolve
from runner.reports.files import check_reports, write_reports
from runner.request import RunRequest
from runner.results import RunResult, Status
from runner.select import Selection
from runner.supervisor.run import RunOptions, run_selection, run_staged
from runner.supervisor.workers import parse_workers
from runner.verdict import Outcome, final_exit, judge

FAIL_FAST_NOTE = "not run: --fail-fast stopped the run at the first failure"


def run(registry: Registry, selection: Selection, request: RunRequest) -> int:
    """Run, then always render and write reports, even after a stop signal or a crash."""
    if request.detect_flakes:
        from runner.commands.flakes import detect_flakes  # noqa: PLC0415

        return detect_flakes(registry, selection, request)
    scores = None if request.mutation is None else read_scores(request.mutation)  # input first
    baseline = load_baseline(request, registry.root, selection.level)
    plan = prepare(registry, selection, request)
    progress = LazyProgress(registry, request.verbosity)
    try:
        result = _supervise(registry, plan, request, progress)
    finally:
        progress.close()
    result = replace(
        result,
        entries=result.entries + plan.left_out,
        context=replace(plan.context, mutation=scores),
    )
    result = carry_quarantines(registry, result, plan.quarantine, request.env)
    if request.fail_fast:
        result = annotate_not_run(result, FAIL_FAST_NOTE)
    outcome = judge(registry, result, request.gate, request.pytest_args)
    return finish(_in_history(outcome, request, baseline), request, progress.console(), plan.store)


def finish(
    outcome: Outcome, request: RunRequest, console: Any, store: dict[str, float] | None
) -> int:
    """Render, write every report, remember the run (durations only where `store` is the
    durations file as read); the exit code, reports lost included."""
    from runner.reports.console import render_summary  # noqa: PLC0415 - see LazyProgress

    render_summary(console, outcome)
    lost = write_reports(outcome, check_reports(request.reports))
    remember(outcome, request, store)
    return final_exit(outcome, lost)


def _in_history(outcome: Outcome, request: RunRequest, baseline: Baseline | None) -> Outcome:
    """The run beside earlier ones: the baseline's changes, the trend of protected MRR."""
    outcome = outcome if baseline is None else compare(outcome, baseline)
    if request.history_file is None or not is_whole(request):  # a part: no trend of wholes
        return outcome
    earlier = history.trend(outcome.registry.root / request.history_file, outcome.run.level)
    return replace(outcome, trend=earlier)


def prepare(registry: Registry, selection: Selection, request: RunRequest) -> Narrowed:
    """Plan the run and say what planning decided; refuse to start pytest for nothing (an
    empty shard is a run of its own: its report tells `merge` it was there)."""
    plan = plan_run(registry, selection, request)
    narrowed = plan.left_out or plan.context.changed or plan.context.shard
    if not plan.selection.runnable and not narrowed:
        raise EmptySelectionError(
            f"{len(selection.pending)} entries match, but all are pending: nothing to run"
        )
    for note in plan.notes:
        print(note, flush=True)
    return plan


def _supervise(
    registry: Registry, plan: Narrowed, request: RunRequest, progress: LazyProgress
) -> RunResult:
    selection = plan.selection
    _announce(selection)
    if not selection.runnable:
        return RunResult(level=selection.level, started_at="", duration=0.0, entries=())
    supervise = run_staged if request.stop_after_failing_tier else run_selection
    options = replace(
        run_options(registry, selection, request, plan.quarantine.skipped_tests()),
        carried=frozenset(plan.quarantine.active),
    )
    return supervise(registry, selection, options, progress)


def carry_quarantines(
    registry: Registry, result: RunResult, carried: InForce, environment: str | None
) -> RunResult:
    """Each entry under the quarantine in force for it; the notes on those not in force."""
    entries = tuple(
        quarantine.apply(r, q, entry, entry.skips_allowed(environment))
        if (q := carried.active.get(r.entry_id)) and (entry := registry.by_id[r.entry_id])
        else r
        for r in result.entries
    )
    return replace(result, entries=entries, warnings=(*result.warnings, *carried.notes))


def run_options(
    registry: Registry, selection: Selection, request: RunRequest, skip: tuple[str, ...] = ()
) -> RunOptions:
    """How to run `selection`; `skip`: node ids quarantined as skipped (pytest --deselect)."""
    level = registry.levels.get(selection.level)
    workers = request.workers or (level.workers if level is not None else None)
    deselect = tuple(arg for nodeid in skip for arg in ("--deselect", nodeid))
    return RunOptions(
        extra_args=deselect + request.pytest_args + (("-x",) if request.fail_fast else ()),
        timeout=request.timeout,
        strict=request.strict,
        workers=parse_workers(workers),
        env=tuple(resolve(registry, request.env).items()) if request.env else (),
        environment=request.env,
    )


def annotate_not_run(result: RunResult, note: str) -> RunResult:
    """Say why entries that never ran did not, where nothing said so yet."""
    entries = tuple(
        replace(e, note=note) if e.status is Status.NOT_RUN and not e.note else e
        for e in result.entries
    )
    return replace(result, entries=entries)


class LazyProgress:
    """The live display, built at the first event: rich loads while pytest starts up
    in the child, instead of before it (about 100 ms less on every run)."""

    def __init__(self, registry: Registry, verbosity: int) -> None:
        self.registry, self.verbosity = registry, verbosity
        self.display: Any = None
        self._console: Any = None

    def console(self) -> Any:
        if self._console is None:
            from runner.reports.console import make_console  # noqa: PLC0415

            self._console = make_console()
        return self._console

    def __call__(self, event: dict[str, Any]) -> None:
        if self.display is None:
            from runner.reports.progress import Progress  # noqa: PLC0415

            display = Progress(self.registry, self.console(), self.verbosity)
            self.display = display.__enter__()
        self.display(event)

    def close(self) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)


def _announce(selection: Selection) -> None:
    runnable, pending = selection.runnable, selection.pending
    count = f"{len(runnable)} entr{'y' if len(runnable) == 1 else 'ies'} to run"
    print(
        f"unified-test-runner: level {selection.level!r}, {count}"
        + (f", {len(pending)} pending" if pending else ""),
        flush=True,
    )


def is_whole(request: RunRequest) -> bool:
    """Did the run take its level whole (what a baseline and a trend compare)?"""
    asked, cut = request.criteria, request.narrowing
    picked = asked.patterns or asked.tiers or asked.ids
    narrowed = (cut.changed and not cut.observe) or cut.shard or cut.budget is not None
    return not (picked or narrowed or request.detect_flakes)


def remember(outcome: Outcome, request: RunRequest, store: dict[str, float] | None) -> None:
    """Durations for sharding and budgets, and the history: neither may change the verdict,
    so a file that cannot be written (or a corrupt or locked database) is a warning. A
    sharded run leaves the durations file alone: the other shards plan from it."""
    root = outcome.registry.root
    try:
        if request.record_durations and store is not None and outcome.run.context.shard is None:
            measured = durations.from_results(outcome.run.entries)
            overhead = durations.startup(outcome.run.duration, outcome.run.entries)
            merged = durations.merge(store, measured, overhead)
            durations.save(root / request.durations_file, merged)
        if request.history_file is not None:
            whole = is_whole(request)
            history.append(root / request.history_file, outcome, head_commit(root), whole)
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"warning: could not record this run: {exc}", file=sys.stderr)
