"""`--detect-flakes N`: the selection N times without retries; a test whose outcome varies
is flaky, and that is the finding (exit 1). The reports carry one attempt per round."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

from runner import signals
from runner.commands.run import finish, run_options
from runner.model import Registry
from runner.request import RunRequest
from runner.results import Attempt, EntryResult, RunResult, Status, TestResult, rollup
from runner.select import Selection, level_timeout
from runner.supervisor.run import run_selection
from runner.verdict import judge

_SETTLED = frozenset({Status.NOT_RUN, Status.DESELECTED})  # no outcome to compare


def detect_flakes(registry: Registry, selection: Selection, request: RunRequest) -> int:
    times = request.detect_flakes or 2
    options = replace(run_options(registry, selection, request), retry=False)
    seconds = request.timeout or level_timeout(registry, selection.level)
    deadline = time.monotonic() + seconds  # --timeout is for the whole run: every round
    rounds: list[RunResult] = []
    for round_ in range(1, times + 1):
        left = deadline - time.monotonic()
        rounds.append(run_selection(registry, selection, replace(options, timeout=left)))
        tests = [t for e in rounds[-1].entries for t in e.tests]
        print(f"round {round_}/{times}: {_counts(Counter(t.status for t in tests))}")
        if rounds[-1].interrupted or rounds[-1].timed_out or signals.requested():
            break
        if time.monotonic() >= deadline and round_ < times:
            print(f"the timeout of {seconds:g} s ended --detect-flakes after {round_} rounds")
            break
    result = fold_rounds(selection, rounds, request.env)
    for test in (t for e in result.entries for t in e.tests if t.status is Status.FLAKY):
        print(f"flaky: {test.nodeid} ({_counts(Counter(a.status for a in test.attempts))})")
    outcome = judge(registry, result, request.gate, request.pytest_args)
    from runner.reports.console import make_console  # noqa: PLC0415

    return finish(outcome, request, make_console(), store=None)


def fold_rounds(selection: Selection, rounds: list[RunResult], env: str | None) -> RunResult:
    """The rounds as one run: each test with an attempt per round, each entry rolled up."""
    by_test: dict[str, list[TestResult]] = {}
    for run in rounds:
        for test in (t for e in run.entries for t in e.tests):
            by_test.setdefault(test.nodeid, []).append(test)
    folded = [_fold_test(runs) for runs in by_test.values()]
    last = {e.entry_id: e for e in rounds[-1].entries}
    entries: list[EntryResult] = []
    for entry in selection.entries:
        tests = tuple(t for t in folded if t.entry_id == entry.id)
        if tests:
            entries.append(rollup(entry.id, tests, allow_skips=entry.skips_allowed(env)))
        elif entry.id in last:
            entries.append(last[entry.id])
    return replace(
        rounds[0],
        entries=tuple(entries),
        duration=sum(r.duration for r in rounds),
        children=tuple(c for r in rounds for c in r.children),
        interrupted_by=next((r.interrupted_by for r in rounds if r.interrupted_by), ""),
        warnings=tuple(dict.fromkeys(w for r in rounds for w in r.warnings)),
        context=replace(rounds[0].context, detect_flakes=len(rounds)),
    )


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
