"""One run from selection to exit code: execute, summarise, judge, render, write reports."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.console import make_console, render_summary
from runner.errors import EmptySelectionError, ExitCode
from runner.gates import evaluate_gate, exit_code
from runner.model import Registry
from runner.orchestrate import RunOptions, RunResult, run_selection
from runner.progress import Progress
from runner.report_json import Outcome, to_dict
from runner.report_junit import render_junit
from runner.select import Selection
from runner.summary import summarize


def execute(registry: Registry, selection: Selection, opts: dict[str, Any]) -> int:
    """Run, then always render and write reports, even after Ctrl-C or a crash."""
    if not selection.runnable:
        raise EmptySelectionError(
            f"{len(selection.pending)} tests match, but all are pending: nothing to run"
        )
    console = make_console()
    options = RunOptions(
        extra_args=tuple(opts["pytest_args"]), timeout=opts["timeout"], strict=bool(opts["strict"])
    )
    _announce(console, registry, selection)
    with Progress(registry, console) as progress:
        result = run_selection(registry, selection, options, progress)
    outcome = judge(registry, result, opts.get("gate"), options.extra_args)
    render_summary(console, outcome)
    if not write_reports(outcome, opts) and outcome.exit_code != ExitCode.INTERRUPTED:
        return int(ExitCode.RUN_BROKEN)  # a lost report is a broken run for CI
    return outcome.exit_code


def _announce(console: Console, registry: Registry, selection: Selection) -> None:
    runnable, pending = selection.runnable, selection.pending
    console.print(
        f"unified-test-runner: level {selection.level!r}, {len(runnable)} tests to run"
        + (f", {len(pending)} pending" if pending else ""),
        highlight=False,
    )


def judge(
    registry: Registry, result: RunResult, gate_name: str | None, pytest_args: tuple[str, ...] = ()
) -> Outcome:
    summary = summarize(registry, result.entries)
    gate = None
    if gate_name is not None:
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


def write_reports(outcome: Outcome, opts: dict[str, Any]) -> bool:
    """Write every requested report; False (and a message) if any could not be written."""
    ok = True
    for key, render in _renderers().items():
        path: Path | None = opts.get(key)
        if path is None:
            continue
        try:
            _atomic_write(path, render(outcome))
        except OSError as exc:
            make_console(stderr=True).print(f"error: cannot write {path}: {exc.strerror}")
            ok = False
    return ok


def _renderers() -> dict[str, Any]:
    return {
        "json_path": lambda o: json.dumps(to_dict(o), indent=2) + "\n",
        "junit_path": render_junit,
    }


def _atomic_write(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
