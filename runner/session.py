"""One run from selection to exit code: narrow, execute, judge, render, write, remember."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner import durations, history
from runner.envprofile import resolve
from runner.errors import EmptySelectionError, ExitCode, UsageError
from runner.gates import evaluate_gate, exit_code
from runner.model import Registry
from runner.narrow import Narrowed, narrow_for
from runner.orchestrate import RunOptions, RunResult, run_selection, run_staged
from runner.report_html import render_html
from runner.report_json import Outcome, to_dict
from runner.report_junit import render_junit
from runner.report_md import render_markdown
from runner.results import Status
from runner.select import Selection
from runner.summary import summarize
from runner.workers import parse_workers

FAIL_FAST_NOTE = "not run: --fail-fast stopped the run at the first failure"


def execute(registry: Registry, selection: Selection, opts: dict[str, Any]) -> int:
    """Run, then always render and write reports, even after Ctrl-C or a crash."""
    plan = prepare(registry, selection, opts)
    for note in plan.notes:
        print(note, flush=True)
    progress = LazyProgress(registry)
    try:
        result = _run(registry, plan.selection, opts, progress)
    finally:
        progress.close()
    from runner.console import render_summary  # noqa: PLC0415 - see LazyProgress

    result = replace(
        result, entries=result.entries + plan.left_out, extra={**result.extra, **plan.meta}
    )
    if opts.get("fail_fast"):
        result = annotate_not_run(result, FAIL_FAST_NOTE)
    outcome = judge(registry, result, opts.get("gate"), tuple(opts["pytest_args"]))
    render_summary(progress.console(), outcome)
    written = write_reports(outcome, opts)
    remember(registry, outcome, opts)
    if not written and outcome.exit_code != ExitCode.INTERRUPTED:
        return int(ExitCode.RUN_BROKEN)  # a lost report is a broken run for CI
    return outcome.exit_code


def prepare(registry: Registry, selection: Selection, opts: dict[str, Any]) -> Narrowed:
    """Shard and budget the selection; refuse to start pytest for nothing."""
    store = durations.load(registry.root / opts.get("durations_file", durations.DEFAULT_FILE))
    expected = durations.estimate(selection.runnable, store)
    plan = narrow_for(registry, selection, expected, opts)
    if not plan.selection.runnable and not plan.left_out and "changed" not in plan.meta:
        raise EmptySelectionError(
            f"{len(selection.pending)} tests match, but all are pending: nothing to run"
        )
    return plan


def _run(
    registry: Registry, selection: Selection, opts: dict[str, Any], progress: LazyProgress
) -> RunResult:
    extra = tuple(opts["pytest_args"]) + (("-x",) if opts.get("fail_fast") else ())
    options = RunOptions(
        extra_args=extra,
        timeout=opts["timeout"],
        strict=bool(opts["strict"]),
        workers=parse_workers(opts.get("workers") or _level_workers(registry, selection)),
        env=tuple(resolve(registry, opts["env"]).items()) if opts.get("env") else (),
    )
    _announce(selection)
    if not selection.runnable:
        return RunResult(level=selection.level, started_at="", duration=0.0, entries=())
    runner = run_staged if opts.get("stop_after_failing_tier") else run_selection
    return runner(registry, selection, options, progress)


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
            from runner.console import make_console  # noqa: PLC0415

            self._console = make_console()
        return self._console

    def __call__(self, event: dict[str, Any]) -> None:
        if self.display is None:
            from runner.progress import Progress  # noqa: PLC0415

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


def judge(
    registry: Registry, result: RunResult, gate_name: str | None, pytest_args: tuple[str, ...] = ()
) -> Outcome:
    summary = summarize(registry, result.entries)
    gate = None
    if gate_name is not None:
        if gate_name not in registry.gates:
            known = ", ".join(sorted(registry.gates)) or "none"
            raise UsageError(f"unknown gate {gate_name!r} (defined: {known})")
        gate = evaluate_gate(registry.gates[gate_name], registry, result.entries, summary)
    code = exit_code(
        interrupted=result.interrupted,
        broken=bool(result.broken),
        results=result.entries,
        gate=gate,
    )
    return Outcome(
        registry=registry,
        run=result,
        summary=summary,
        gate=gate,
        exit_code=int(code),
        pytest_args=pytest_args,
    )


RENDERERS: dict[str, Any] = {
    "json_path": lambda o: json.dumps(to_dict(o), indent=2) + "\n",
    "junit_path": render_junit,
    "markdown_path": render_markdown,
    "html_path": render_html,
}


def write_reports(outcome: Outcome, opts: dict[str, Any]) -> bool:
    """Every requested report, and the step summary under GitHub Actions; False on a failure."""
    ok = True
    targets = [(opts.get(key), render, False) for key, render in RENDERERS.items()]
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        targets.append((Path(summary_file), render_markdown, True))
    for path, render, append in targets:
        if path is None:
            continue
        try:
            _write(Path(path), render(outcome), append)
        except OSError as exc:
            print(f"error: cannot write {path}: {exc.strerror}", file=sys.stderr)
            ok = False
    return ok


def _write(path: Path, text: str, append: bool) -> None:
    """Append (step summaries), or write beside the target and rename: never half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if append:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remember(registry: Registry, outcome: Outcome, opts: dict[str, Any]) -> None:
    """Durations for sharding and budgets, and the history; neither may fail the run."""
    try:
        if opts.get("record_durations", True):
            path = registry.root / opts.get("durations_file", durations.DEFAULT_FILE)
            durations.save(
                path,
                durations.merge(durations.load(path), durations.from_results(outcome.run.entries)),
            )
        if opts.get("history", True):
            history.append(registry.root / opts.get("history_file", history.DEFAULT_FILE), outcome)
    except (OSError, ValueError) as exc:
        print(f"warning: could not record this run: {exc}", file=sys.stderr)


def detect_flakes(
    registry: Registry, selection: Selection, opts: dict[str, Any], times: int
) -> int:
    """Run the selection `times` times without retries; exit 1 if any test's outcome varies."""
    options = RunOptions(
        extra_args=tuple(opts["pytest_args"]), timeout=opts["timeout"], retry=False
    )
    outcomes: dict[str, Counter[str]] = {}
    for round_ in range(1, times + 1):
        tests = [t for e in run_selection(registry, selection, options).entries for t in e.tests]
        for test in tests:
            outcomes.setdefault(test.nodeid, Counter())[test.status] += 1
        print(f"round {round_}/{times}: {_counts(Counter(t.status for t in tests))}")
    flaky = {n: c for n, c in outcomes.items() if len(c) > 1}
    for nodeid, counts in sorted(flaky.items()):
        print(f"flaky: {nodeid} ({_counts(counts)})")
    print(f"{len(flaky)} of {len(outcomes)} tests had mixed outcomes over {times} runs")
    return int(ExitCode.TESTS_FAILED if flaky else ExitCode.OK)


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
