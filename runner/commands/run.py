"""One run from selection to exit code: narrow, execute, judge, render, write, remember."""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from dataclasses import replace
from typing import Any

from runner import history, signals
from runner.errors import EmptySelectionError
from runner.model import Registry
from runner.planning import durations
from runner.planning.narrow import Narrowed, narrow_for
from runner.registry.environments import resolve
from runner.reports.files import report_paths, write_reports
from runner.results import Attempt, RunResult, Status, TestResult, rollup
from runner.select import Selection
from runner.supervisor.run import RunOptions, run_selection, run_staged
from runner.supervisor.workers import parse_workers
from runner.verdict import Outcome, final_exit, judge

FAIL_FAST_NOTE = "not run: --fail-fast stopped the run at the first failure"


def execute(registry: Registry, selection: Selection, opts: dict[str, Any]) -> int:
    """Run, then always render and write reports, even after a stop signal or a crash."""
    plan = prepare(registry, selection, opts)
    for note in plan.notes:
        print(note, flush=True)
    progress = LazyProgress(registry)
    try:
        result = _run(registry, plan.selection, opts, progress)
    finally:
        progress.close()
    result = replace(
        result, entries=result.entries + plan.left_out, extra={**result.extra, **plan.meta}
    )
    if opts.get("fail_fast"):
        result = annotate_not_run(result, FAIL_FAST_NOTE)
    outcome = judge(registry, result, opts.get("gate"), tuple(opts["pytest_args"]))
    return finish(outcome, opts, progress.console())


def finish(outcome: Outcome, opts: dict[str, Any], console: Any) -> int:
    """Render, write every report, remember the run; the exit code, reports lost included."""
    from runner.reports.console import render_summary  # noqa: PLC0415 - see LazyProgress

    render_summary(console, outcome)
    lost = write_reports(outcome, report_paths(opts))
    remember(outcome.registry, outcome, opts)
    return final_exit(outcome, lost)


def prepare(registry: Registry, selection: Selection, opts: dict[str, Any]) -> Narrowed:
    """Shard and budget the selection; refuse to start pytest for nothing (an empty shard
    is a run of its own: its report tells `merge` it was there)."""
    store = durations.load(registry.root / opts.get("durations_file", durations.DEFAULT_FILE))
    expected = durations.estimate(selection.runnable, store)
    plan = narrow_for(registry, selection, expected, opts)
    narrowed = plan.left_out or "changed" in plan.meta or "shard" in plan.meta
    if not plan.selection.runnable and not narrowed:
        raise EmptySelectionError(
            f"{len(selection.pending)} tests match, but all are pending: nothing to run"
        )
    return plan


def _run(
    registry: Registry, selection: Selection, opts: dict[str, Any], progress: LazyProgress
) -> RunResult:
    _announce(selection)
    if not selection.runnable:
        return RunResult(level=selection.level, started_at="", duration=0.0, entries=())
    runner = run_staged if opts.get("stop_after_failing_tier") else run_selection
    return runner(registry, selection, run_options(registry, selection, opts), progress)


def run_options(registry: Registry, selection: Selection, opts: dict[str, Any]) -> RunOptions:
    extra = tuple(opts["pytest_args"]) + (("-x",) if opts.get("fail_fast") else ())
    return RunOptions(
        extra_args=extra,
        timeout=opts.get("timeout"),
        strict=bool(opts.get("strict")),
        workers=parse_workers(opts.get("workers") or _level_workers(registry, selection)),
        env=tuple(resolve(registry, opts["env"]).items()) if opts.get("env") else (),
        environment=opts.get("env"),
    )


def _level_workers(registry: Registry, selection: Selection) -> str | None:
    level = registry.levels.get(selection.level)
    return level.workers if level is not None else None


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

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
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

            self.display = Progress(self.registry, self.console()).__enter__()
        self.display(event)

    def close(self) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)


def _announce(selection: Selection) -> None:
    runnable, pending = selection.runnable, selection.pending
    print(
        f"unified-test-runner: level {selection.level!r}, {len(runnable)} tests to run"
        + (f", {len(pending)} pending" if pending else ""),
        flush=True,
    )


def remember(registry: Registry, outcome: Outcome, opts: dict[str, Any]) -> None:
    """Durations for sharding and budgets, and the history: neither may change the verdict,
    so a file that cannot be written (or a corrupt or locked database) is a warning."""
    sharded = "shard" in outcome.run.extra  # the file the other shards plan from stays put
    try:
        if opts.get("record_durations", True) and not sharded:
            path = registry.root / opts.get("durations_file", durations.DEFAULT_FILE)
            durations.save(
                path,
                durations.merge(durations.load(path), durations.from_results(outcome.run.entries)),
            )
        if opts.get("history", True):
            history.append(registry.root / opts.get("history_file", history.DEFAULT_FILE), outcome)
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"warning: could not record this run: {exc}", file=sys.stderr)


def detect_flakes(
    registry: Registry, selection: Selection, opts: dict[str, Any], times: int
) -> int:
    """Run the selection `times` times without retries; a test whose outcome varies is
    flaky, and makes the run exit 1. Reports carry one attempt per round."""
    options = replace(run_options(registry, selection, opts), retry=False)
    rounds: list[RunResult] = []
    for round_ in range(1, times + 1):
        rounds.append(run_selection(registry, selection, options))
        tests = [t for e in rounds[-1].entries for t in e.tests]
        print(f"round {round_}/{times}: {_counts(Counter(t.status for t in tests))}")
        if rounds[-1].interrupted or signals.requested():
            break
    result = _fold_rounds(selection, rounds, opts.get("env"))
    for test in (t for e in result.entries for t in e.tests if t.status is Status.FLAKY):
        print(f"flaky: {test.nodeid} ({_counts(Counter(a.status for a in test.attempts))})")
    outcome = judge(
        registry, result, opts.get("gate"), tuple(opts["pytest_args"]), flaky_fails=True
    )
    from runner.reports.console import make_console  # noqa: PLC0415

    return finish(outcome, {**opts, "record_durations": False}, make_console())


def _fold_rounds(selection: Selection, rounds: list[RunResult], env: str | None) -> RunResult:
    by_test: dict[str, list[TestResult]] = {}
    for run in rounds:
        for test in (t for e in run.entries for t in e.tests):
            by_test.setdefault(test.nodeid, []).append(test)
    folded = [_fold_test(runs) for runs in by_test.values()]
    entries = []
    for entry in selection.entries:
        last = next((e for e in rounds[-1].entries if e.entry_id == entry.id), None)
        tests = tuple(t for t in folded if t.entry_id == entry.id)
        if tests:
            entries.append(rollup(entry.id, tests, allow_skips=entry.skips_allowed(env)))
        elif last is not None:
            entries.append(last)
    first = rounds[0]
    return replace(
        first,
        entries=tuple(entries),
        duration=sum(r.duration for r in rounds),
        children=tuple(c for r in rounds for c in r.children),
        interrupted_by=next((r.interrupted_by for r in rounds if r.interrupted_by), ""),
        warnings=tuple(dict.fromkeys(w for r in rounds for w in r.warnings)),
    )


_SETTLED = frozenset({Status.NOT_RUN, Status.DESELECTED})


def _fold_test(runs: list[TestResult]) -> TestResult:
    """One test over the rounds: its attempts, and flaky when their outcomes differ."""
    attempts = tuple(
        Attempt(number=i, status=t.status, duration=t.duration, message=t.message)
        for i, t in enumerate(runs, start=1)
    )
    outcomes = {t.status for t in runs} - _SETTLED
    worst = next((t for t in runs if t.status not in (Status.PASSED, Status.XPASSED)), runs[-1])
    status = Status.FLAKY if len(outcomes) > 1 else worst.status
    return replace(worst, status=status, attempts=attempts, duration=sum(t.duration for t in runs))


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
